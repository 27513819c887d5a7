/* boxlp: a bounded-variable dual simplex for the Chebyshev LPs of a cell inside a box.
 *
 *     maximise s   subject to   a_i . y + s <= c_i   (i < m, unit rows a_i),
 *                               l <= y <= u,  s <= cap
 *
 * With l = box_lo + tol and u = box_hi - tol, "the cell holds a ball of radius > tol inside the
 * box" is exactly "s* > tol": the box is simple bounds on the k columns, not 2k rows, so the
 * basis has one entry per cell row whatever k is.  Rows carry ids; a solve keeps the basis of
 * the rows it shares with the previous solve (a child's LP is its parent's plus one row: a pivot
 * or two), adds new rows with their slack basic, and relaxes or drops rows no longer asked for.
 *
 * Every answer comes with a certificate computed afresh from the returned data: LB, the exact
 * smallest row margin at the returned point (which lies in [l, u]), and UB, the dual bound of
 * the final multipliers (valid for any nonnegative multipliers), so LB <= s* <= UB whatever the
 * rounding inside the simplex.  No MPI, no Python.
 */
#ifndef MPI_ENUM_BOXLP_H
#define MPI_ENUM_BOXLP_H

typedef struct BoxLP BoxLP;

/* fmax(a, b) as C99 defines it (a NaN argument gives the other), inline: libm's fmax is a call
 * in the O(k) dual-bound loops of the box LP and the subspace LP */
static inline double blp_fmax(double a, double b) {
    if (b != b) return a;
    if (a != a) return b;
    return a > b ? a : b;
}

/* k columns, at most mmax rows, the box [lo, hi] (finite) and the LP's bounds l = lo + shrink,
 * u = hi - shrink (with shrink = tol: see above); cap bounds the reported LB.  Returns NULL if an
 * allocation fails or the box is not wider than 2 * shrink in some coordinate. */
BoxLP *blp_new(int k, int mmax, const double *lo, const double *hi, double shrink, double cap);
void blp_free(BoxLP *P);
/* forget the basis: the next solve starts cold */
void blp_reset(BoxLP *P);

/* Solve for the m rows (A row-major m x k, c, ids).  yhint (length k, may be NULL) picks the
 * cold start's row.  On return y_out holds a point of [l, u], *LB the smallest margin
 * c_i - a_i . y_out (at most cap), *UB the dual bound of max s over [l, u] and *UBfull the same
 * multipliers' bound over the full box [lo, hi] (UBfull < 0: the rows and the box have no common
 * point).  Returns 0 on success, -1 if the simplex failed (iteration limit, singular basis,
 * m > mmax): the caller must not use LB/UB then. */
int blp_solve(BoxLP *P, int m, const long long *ids, const double *A, const double *c, const double *yhint,
              double *y_out, double *LB, double *UB, double *UBfull);

/* stop as soon as a certificate decides: a clipped primal point with margin > keep_above, or a
 * dual bound < reject_below (the returned LB/UB are then those certificates, not the optimum) */
void blp_set_early(BoxLP *P, double keep_above, double reject_below);

/* counters: solves, pivots, cold starts, refactorisations */
void blp_counters(const BoxLP *P, long long out[4]);

#endif
