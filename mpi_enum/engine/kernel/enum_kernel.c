/* mpi_enum's search kernel: the exact depth-first enumeration of mpi_enum.engine, in C.
 *
 * Layer-major depth-first search over the hidden neurons with ball certificates, a
 * bounding-box test, per-layer screening and Chebyshev LPs (the algorithm is described in
 * mpi_enum/engine/search.py; the test oracle tests/reference_engine.py makes the same
 * decisions in Python).  Every numeric threshold is in decisions.h; the interface is kernel.h.
 *
 * LPs.  For k <= dense_max_k an LP is first solved by a small dense primal active-set method
 * (x = (y, t), k+1 variables) started from the node's ball centre.  Its answer is certified:
 * LB = the exact inscribed radius at the returned centre (a feasible ball), UB = the dual
 * bound of the final working set; it is used only when LB > tol + band (keep) or
 * UB < tol - band (reject).  Anything else (including any numerical failure), and every LP for
 * k > dense_max_k (where the dense method's O(k^3) per pivot loses to HiGHS), goes to the
 * caller's lp_fn with the ids of the path rows (HiGHS, warm-started on the common prefix).
 * On box domains with k > dense_max_k the box LP (boxlp.c: the box as bounds, not 2k rows; a
 * warm-started bounded dual simplex) decides first, certified the same way; the rest goes to
 * lp_fn.  Before it, where the first layer spans at most half the inputs (2 n1 <= k), the
 * subspace LP (sub_try) decides most LPs with nq + 1 variables: the dense method over the points
 * y0 + span(sq), sq an orthonormal basis of the first layer's row space, in which every
 * hyperplane normal lies; the same basis carries each layer's map (Hq) for the affine ranks.
 *
 * No MPI, no Python API: built into the CPython extension mpi_enum.engine._kernel together
 * with pymodule.c (CMakeLists.txt, at install time).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "boxlp.h"
#include "kernel.h"
#include "vrep.h"

typedef struct {
    int depth, nrows, has_row, row_id;
    unsigned char bit;
    double r;
    size_t voff; /* the cell's vertex set on the vrep arena (vn vertices; -1: not known) */
    int vn;
} Entry;

struct kc_ctx {
    int k, L, N;
    int *widths, *offsets, *layer_of, *bnd;
    double **W, **b, *wscale;
    int **nzptr, **nzcol;  /* per layer >= 1: W's nonzeros by row (CSR) where W is at most half
                            * full (a pooling's selection, a convolution), else NULL */
    double *slope;         /* N: output factor of each neuron on its inactive side (0: ReLU) */
    unsigned char *linear; /* N: 1 = linear neuron (no hyperplane, bit fixed at 1) */
    int *gfirst, *gend;    /* N: the max group [gfirst, gend) of each member (-1: not in a group) */
    signed char *gpre;     /* N: 0 = the member is never its group's maximum in this layer-start
                            * cell, 1 = always (no rows needed; group_screen), -1 = undecided
                            * (kc_run's g-way split decides) */
    int has_groups;
    int mG;
    double *G, *h;
    int bounded;
    double *ylo, *yhi;
    double tol, cap, drop, band;
    int dense; /* 1: try the dense LP first (k <= dense_max_k) */
    BoxLP *blp; /* box domains with k > dense_max_k: the box LP first */
    double *blp_A, *blp_c, *v2, *v3;
    long long *blp_id;
    /* the subspace LP (sub_try: box domains whose first layer spans at most half the inputs) */
    int nq;                 /* rows of sq (0: no subspace LP) */
    double *sq, *sqt;       /* nq x k: orthonormal basis of the first layer's row space; k x nq */
    double *rq;             /* (N + 1) x nq: the path rows in that basis (valid where rq_ok) */
    unsigned char *rq_ok;
    double *sub_A, *sub_m, *sub_z, *sub_g, *sy0;
    double *sub_y, *sqc;    /* k: the box centre; nq: sq times the box centre */
    double *sub_f;          /* nq: the subspace LP's point in the basis sq, relative to the centre */
    int *sub_box;           /* the box faces taken in as rows (2 e + 1: upper face of y_e) */
    int nW;                 /* the dense LP's final working set size (Wset, lam) */
    double sub_cap;         /* the radius the subspace LP stops at */
    double **Hq;            /* per layer, widths[l] x nq: H[l] in the basis sq (NULL: not kept;
                             * kept when the first layer's rows are independent, nq = widths[0],
                             * so every H row lies in span(sq) to rounding): the ranks use it */
    long long sub_tries, sub_dec, sub_rounds;
    VRep *vr; /* box domains with k <= VREP_MAX_K: the cells' vertex sets */
    /* layer slots */
    double **H, **h0, **Hn, **h0n, **nrm, *mscale;
    signed char **pre;
    int *rank;
    /* path: bits, rows (nrows x k), right-hand sides, row ids (2*i+bit) */
    unsigned char *bits;
    double *rows, *rhs;
    int *rowid;
    /* stack */
    Entry *st;
    double *st_y, *st_row;
    int nst, st_cap;
    /* dense LP workspace (only when dense) */
    double *lpA, *lpb, *Q, *R, *x, *p, *lam, *Qc;
    int *Wset;
    unsigned char *inW;
    /* scratch */
    double *v, *ya, *yi, *yc, *rowbuf, *Mbuf, *jac;
    /* emit buffer */
    int emax, ne;
    unsigned char *ebits;
    double *ey, *er;
    int *erank;
    /* stats */
    long long nodes, lps, regions, cert_both, screened, fallbacks, lp_iters, lp_fail;
    long long vdec, vwit, vlost; /* vertex-set decisions, centroid witnesses, cells given back */
    long long *layer_counts;
    kc_lp_fn lp_fn;
    void *lp_user;
    int error, started, oom;
};

/* calloc of n*s bytes (at least 1), overflow-checked; a failure is recorded in C->oom */
static void *zalloc(kc_ctx *C, size_t n, size_t s) {
    if (C->oom) return NULL;
    if (n == 0) n = 1;
    if (s == 0) s = 1;
    void *q = (n > SIZE_MAX / s) ? NULL : calloc(n, s);
    if (!q) C->oom = 1;
    return q;
}

static inline double dot(const double *a, const double *b, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ------------------------------------------------------------------ dense LP (active set) */

/* Modified Gram-Schmidt (twice) of rows A[W[0..w-1]] (skipping position `skip`) into Q
 * (rows, length n) and upper-triangular R (n x n, row-major).  Returns the number of basis
 * vectors, or -1 if a row is numerically dependent. */
static int mgs_from(const double *A, int n, const int *W, int w, int skip, int c0, double *Q, double *R, double *v);
static int mgs(const double *A, int n, const int *W, int w, int skip, double *Q, double *R, double *v) {
    return mgs_from(A, n, W, w, skip, 0, Q, R, v);
}

/* mgs() for the rows from position c0 on, the basis vectors of the rows before c0 (none of them
 * skipped) being already in Q and R: each vector depends only on the rows before it, so the
 * result is bitwise that of mgs() */
static int mgs_from(const double *A, int n, const int *W, int w, int skip, int c0, double *Q, double *R, double *v) {
    int q = c0;
    for (int c = c0; c < w; c++) {
        if (c == skip) continue;
        const double *a = A + (size_t)W[c] * n;
        memcpy(v, a, sizeof(double) * n);
        for (int i = 0; i < q; i++) R[i * n + q] = 0.0;
        for (int pass = 0; pass < 2; pass++) {
            for (int i = 0; i < q; i++) {
                double d = dot(Q + i * n, v, n);
                R[i * n + q] += d;
                for (int e = 0; e < n; e++) v[e] -= d * Q[i * n + e];
            }
        }
        double nv = sqrt(dot(v, v, n));
        if (!(nv > KC_GS_DEP)) return -1;
        R[q * n + q] = nv;
        for (int e = 0; e < n; e++) Q[q * n + e] = v[e] / nv;
        q++;
    }
    return q;
}

/* The ratio test of lp_active: the row outside the working set that blocks the step x + al p
 * first (ties: smallest index); its step in *amin.  A function of its own (not inlined), so
 * its loop keeps everything in registers: inlined into the LP it ran ~10% slower (measured). */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static int ratio_test(const double *A, const double *b, const unsigned char *inW, const double *x, const double *p,
                      int m, int n, double *amin) {
    double best = INFINITY;
    int enter = -1;
    for (int i = 0; i < m; i++) {
        if (inW[i]) continue;
        const double *a = A + (size_t)i * n;
        double ap = dot(a, p, n);
        if (ap > KC_RATIO_MIN) {
            double s = b[i] - dot(a, x, n);
            if (s < 0) s = 0;
            double al = s / ap;
            if (al < best) { best = al; enter = i; }
        }
    }
    *amin = best;
    return enter;
}

/* maximise x[n-1] subject to A x <= b (every row has coefficient 1 on x[n-1]; the last row is
 * the cap row).  x holds the start y (first n-1 entries); on success x is the solution and
 * *LB (exact radius at the returned y) and *UB (dual bound) are set.  Returns 0 or -1. */
static int lp_active(kc_ctx *C, int m, int n, double *LB, double *UB) {
    const double *A = C->lpA, *b = C->lpb;
    double *x = C->x, *Q = C->Q, *R = C->R, *p = C->p, *v = C->v, *lam = C->lam, *Qc = C->Qc;
    int *W = C->Wset;
    unsigned char *inW = C->inW;
    int nn = n - 1, w = 0;
    /* start: t = min slack at y */
    double t = INFINITY;
    int arg = -1;
    for (int i = 0; i < m; i++) {
        double s = b[i] - dot(A + (size_t)i * n, x, nn);
        if (s < t) { t = s; arg = i; }
        inW[i] = 0;
    }
    if (arg < 0) return -1; /* NaN slacks */
    x[nn] = t;
    W[w++] = arg;
    inW[arg] = 1;
    int maxit = KC_LP_MAXIT_BASE + KC_LP_MAXIT_PER_ROW * m, degen = 0;
    int qv = 0; /* Q, R hold the basis of W[0, qv) (incremental: see mgs_from) */
    for (int it = 0; it < maxit; it++) {
        C->lp_iters++;
        int q = mgs_from(A, n, W, w, -1, qv, Q, R, v);
        if (q < 0) return -1;
        qv = w;
        for (int i = 0; i < w; i++) Qc[i] = Q[i * n + nn];
        for (int e = 0; e < n; e++) p[e] = 0.0;
        p[nn] = 1.0;
        for (int i = 0; i < w; i++)
            for (int e = 0; e < n; e++) p[e] -= Qc[i] * Q[i * n + e];
        double np = sqrt(dot(p, p, n));
        int drop = -1;
        if (np > KC_LP_DIR_ZERO && w < n) {
            for (int e = 0; e < n; e++) p[e] /= np;
        } else {
            /* multipliers: R lam = Qc (upper triangular) */
            for (int i = w - 1; i >= 0; i--) {
                double s = Qc[i];
                for (int j = i + 1; j < w; j++) s -= R[i * n + j] * lam[j];
                lam[i] = s / R[i * n + i];
            }
            int bland = degen > KC_LP_BLAND_PER_VAR * n + KC_LP_BLAND_BASE;
            double best = -KC_LP_MULT_NEG;
            int bidx = 1 << 30;
            for (int i = 0; i < w; i++) {
                if (lam[i] < -KC_LP_MULT_NEG) {
                    if (bland) {
                        if (W[i] < bidx) { bidx = W[i]; drop = i; }
                    } else if (lam[i] < best) {
                        best = lam[i];
                        drop = i;
                    }
                }
            }
            if (drop < 0) {
                double ub = 0.0;
                for (int i = 0; i < w; i++) ub += (lam[i] > 0 ? lam[i] : 0.0) * b[W[i]];
                double lb = INFINITY;
                for (int i = 0; i < m; i++) {
                    double s = b[i] - dot(A + (size_t)i * n, x, nn);
                    if (s < lb) lb = s;
                }
                *LB = lb;
                *UB = ub;
                C->nW = w;
                return 0;
            }
            int qq = mgs_from(A, n, W, w, drop, drop, Q, R, v); /* the rows before drop keep theirs */
            if (qq < 0) return -1;
            qv = w - 1; /* W without drop, in order: what W is below once drop leaves it */
            const double *aq = A + (size_t)W[drop] * n;
            memcpy(v, aq, sizeof(double) * n);
            for (int pass = 0; pass < 2; pass++)
                for (int i = 0; i < qq; i++) {
                    double d = dot(Q + i * n, v, n);
                    for (int e = 0; e < n; e++) v[e] -= d * Q[i * n + e];
                }
            double nv = sqrt(dot(v, v, n));
            if (!(nv > KC_GS_DEP)) return -1;
            for (int e = 0; e < n; e++) p[e] = -v[e] / nv;
        }
        double amin;
        int enter = ratio_test(A, b, inW, x, p, m, n, &amin);
        if (enter < 0) return -1; /* unbounded: impossible with the cap row */
        for (int e = 0; e < n; e++) x[e] += amin * p[e];
        if (amin == 0.0) degen++;
        if (drop >= 0) {
            inW[W[drop]] = 0;
            for (int i = drop; i < w - 1; i++) W[i] = W[i + 1];
            w--;
        }
        W[w++] = enter;
        inW[enter] = 1;
    }
    return -1;
}

/* The subspace and box-ball LPs below loop over the k box columns (784 for images), where GCC's
 * vectorised loops pay off: 1.1-1.3x at d = 64 and 784, no slower at d = 3..8 (measured,
 * benchmarks/run_bench.py); the rest of the file loops over k+1 <= 33 values and stays scalar
 * (CMakeLists.txt passes -fno-tree-vectorize). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("tree-vectorize")
#endif
/* distance of y to the boundary of the box [ylo, yhi] */
static double box_dist(const kc_ctx *C, const double *y) {
    double r = INFINITY;
    for (int e = 0; e < C->k; e++) {
        double d1 = y[e] - C->ylo[e], d2 = C->yhi[e] - y[e];
        if (d1 < r) r = d1;
        if (d2 < r) r = d2;
    }
    return r;
}

/* smallest margin c_i - a_i . y of the m rows (A, c: unit rows) */
static double min_margin(const kc_ctx *C, const double *A, const double *c, int m, const double *y) {
    double r = INFINITY;
    for (int i = 0; i < m; i++) {
        double s = c[i] - dot(A + (size_t)i * C->k, y, C->k);
        if (s < r) r = s;
    }
    return r;
}

/* the exact inscribed radius at y of the m rows and the box */
static double ball_at(const kc_ctx *C, const double *A, const double *c, int m, const double *y) {
    double rb = box_dist(C, y), rm = min_margin(C, A, c, m, y);
    return rb < rm ? rb : rm;
}

/* The ball of a box-LP answer: y (in the box shrunk by tol, every margin >= lb) is often on
 * that shrunk box's boundary, so its ball is only tol wide.  Points toward ystart (the node's
 * ball centre, inside the cell without the new row and deep in the box) often hold a much
 * larger ball, and a larger ball certifies more decisions further down without LPs: try a
 * few, keep the best (every radius is exact at its point).  Writes the centre to y. */
static double box_ball(kc_ctx *C, int m, double *y, const double *ystart, double lb) {
    int k = C->k;
    const double *A = C->blp_A, *c = C->blp_c;
    double best = ball_at(C, A, c, m, y);
    /* along y -> ystart the margins are >= lb + th (m0 - lb) and the box distance is
     * >= tol + th (b0 - tol) (concave minima of affine functions): th0 balances the two, so its
     * ball is wider than tol whenever ystart's ball is */
    double m0 = min_margin(C, A, c, m, ystart), b0 = box_dist(C, ystart);
    double den = (lb - C->tol) + (b0 - m0);
    double th0 = den > 0 ? (lb - C->tol) / den : 0.5;
    double ths[5] = {th0, 2.0 * th0, 0.5 * th0, 0.5, 0.25};
    double *z = C->v2, *bz = C->v3;
    int have = 0;
    for (int q = 0; q < 5; q++) {
        double th = ths[q];
        if (!(th > 0.0 && th <= 1.0)) continue;
        for (int e = 0; e < k; e++) z[e] = y[e] + th * (ystart[e] - y[e]);
        double r = ball_at(C, A, c, m, z);
        if (r > best) { best = r; memcpy(bz, z, sizeof(double) * k); have = 1; }
    }
    if (have) memcpy(y, bz, sizeof(double) * k);
    return best;
}

/* ------------------------------------------------------------------ subspace LP */

/* dot product with four partial sums (the subspace LP's loops over k, where k is large) */
static inline double dotw(const double *a, const double *b, int n) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i]; s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2]; s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

/* An orthonormal basis sq of the first layer's row space (Gram-Schmidt twice; dependent rows
 * dropped).  Every hyperplane normal of every layer, max-group comparisons included, lies in
 * it: a layer's rows are combinations of the previous layer's. */
static int sub_setup(kc_ctx *C) {
    int k = C->k, n1 = C->widths[0];
    C->sq = (double *)zalloc(C, (size_t)n1 * k, sizeof(double));
    C->sqt = (double *)zalloc(C, (size_t)n1 * k, sizeof(double));
    C->sub_A = (double *)zalloc(C, (size_t)(C->N + 2) * n1, sizeof(double));
    C->sub_m = (double *)zalloc(C, (size_t)C->N + 2, sizeof(double));
    C->sub_z = (double *)zalloc(C, (size_t)k, sizeof(double));
    C->sub_g = (double *)zalloc(C, (size_t)k, sizeof(double));
    C->sub_box = (int *)zalloc(C, KC_SUB_BOX_MAX, sizeof(int));
    C->rq = (double *)zalloc(C, (size_t)(C->N + 1) * n1, sizeof(double));
    C->rq_ok = (unsigned char *)zalloc(C, (size_t)C->N + 1, 1);
    C->sy0 = (double *)zalloc(C, (size_t)n1 + 1, sizeof(double));
    C->sub_y = (double *)zalloc(C, (size_t)k, sizeof(double));
    C->sqc = (double *)zalloc(C, (size_t)n1 + 1, sizeof(double));
    C->sub_f = (double *)zalloc(C, (size_t)n1 + 1, sizeof(double));
    if (C->oom) return -1;
    int q = 0;
    for (int j = 0; j < n1; j++) {
        double *v = C->sq + (size_t)q * k;
        memcpy(v, C->W[0] + (size_t)j * k, sizeof(double) * k);
        double n0 = sqrt(dotw(v, v, k));
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < q; i++) {
                const double *u = C->sq + (size_t)i * k;
                double d = dotw(u, v, k);
                for (int e = 0; e < k; e++) v[e] -= d * u[e];
            }
        double nv = sqrt(dotw(v, v, k));
        if (!(n0 > 0.0) || !(nv > KC_SUB_DEP * n0)) continue;
        for (int e = 0; e < k; e++) v[e] /= nv;
        q++;
    }
    C->nq = q;
    double hw = INFINITY;
    for (int e = 0; e < k; e++) hw = fmin(hw, 0.5 * (C->yhi[e] - C->ylo[e]));
    C->sub_cap = fmax(KC_SUB_CAP_REL * hw, KC_SUB_CAP_MIN * (C->tol + C->band));
    for (int i = 0; i < q; i++)
        for (int e = 0; e < k; e++) C->sqt[(size_t)e * q + i] = C->sq[(size_t)i * k + e];
    for (int e = 0; e < k; e++) C->sub_y[e] = 0.5 * (C->ylo[e] + C->yhi[e]); /* the box centre */
    for (int i = 0; i < q; i++) C->sqc[i] = dotw(C->sq + (size_t)i * k, C->sub_y, k);
    return 0;
}

/* Hq[l] (widths[l] x nq) for every layer, Hq[0] = W[0] sq^T once: transition() carries it
 * along with H, and the affine ranks are computed on it (the same singular values as H's
 * rows, sq having orthonormal rows that span them: nq-long rows instead of k-long). */
static int hq_setup(kc_ctx *C) {
    int k = C->k, nq = C->nq;
    C->Hq = (double **)zalloc(C, C->L, sizeof(double *));
    if (C->oom) return -1;
    for (int l = 0; l < C->L; l++) C->Hq[l] = (double *)zalloc(C, (size_t)C->widths[l] * nq, sizeof(double));
    if (C->oom) return -1;
    for (int j = 0; j < C->widths[0]; j++)
        for (int p = 0; p < nq; p++)
            C->Hq[0][(size_t)j * nq + p] = dotw(C->W[0] + (size_t)j * k, C->sq + (size_t)p * k, k);
    return 0;
}

/* path row i (< nrows) or the extra row (a, c0) (i == nrows) */
static inline const double *sub_row(const kc_ctx *C, int nrows, int i, const double *a) {
    return i < nrows ? C->rows + (size_t)i * C->k : a;
}

/* the exact inscribed radius at z of the path rows, the extra row (a, c0) and the box */
static double sub_ball(const kc_ctx *C, int nrows, const double *a, double c0, const double *z) {
    int k = C->k;
    double r = box_dist(C, z);
    for (int i = 0; i <= nrows; i++) {
        double s = (i < nrows ? C->rhs[i] : c0) - dotw(sub_row(C, nrows, i, a), z, k);
        if (s < r) r = s;
    }
    return r;
}

/* A witness for the cell of the path rows and (a, c0) without the box LP: the dense LP over the
 * points y0 + span(sq) (nq + 1 variables: the cell's rows in the basis sq, of which the cells
 * ignore nothing), maximising the inscribed radius up to SUB_CAP; the box faces that its solution
 * comes closer to than that radius are added as rows and the LP solved again (SUB_ROUNDS at
 * most).  Returns the exact radius (sub_ball) at the point written to z, or -inf if the dense LP
 * failed; on success the LP's final working set and multipliers stay in C->Wset / C->lam. */
static double sub_try(kc_ctx *C, int nrows, const double *a, double c0, const double *ystart, double *z) {
    int k = C->k, nq = C->nq, n = nq + 1, m = nrows + 1;
    double *Aq = C->sub_A, *mg = C->sub_m, *sy = C->sy0, *cen = C->sub_y, *f = C->sub_f;
    C->sub_tries++;
    for (int p = 0; p < nq; p++) sy[p] = dotw(C->sq + (size_t)p * k, ystart, k);
    /* the origin y0 = cen + sq^T f0: ystart's component in span(sq) plus the box centre's
     * across it (the cells see only the first; the box faces are farthest with the second).
     * Never formed: a box face row needs one coordinate of it, the point z = y0 + sq^T beta
     * is cen + sq^T (f0 + beta) */
    for (int p = 0; p < nq; p++) f[p] = sy[p] - C->sqc[p];
    for (int i = 0; i < m; i++) { /* rows in the basis and their margins at y0 */
        double *q = Aq + (size_t)i * nq;
        const double *row = sub_row(C, nrows, i, a);
        if (i < nrows && C->rq_ok[i]) {
            memcpy(q, C->rq + (size_t)i * nq, sizeof(double) * nq);
        } else {
            for (int p = 0; p < nq; p++) q[p] = dotw(C->sq + (size_t)p * k, row, k);
            if (i < nrows) { memcpy(C->rq + (size_t)i * nq, q, sizeof(double) * nq); C->rq_ok[i] = 1; }
        }
        mg[i] = (i < nrows ? C->rhs[i] : c0) - dot(q, sy, nq);
    }
    int nb = 0;
    for (int p = 0; p < n; p++) C->x[p] = 0.0;
    for (int round = 0; round < KC_SUB_ROUNDS; round++) {
        double *L = C->lpA, *b = C->lpb;
        int r = 0;
        for (int i = 0; i < m; i++, r++) {
            memcpy(L + (size_t)r * n, Aq + (size_t)i * nq, sizeof(double) * nq);
            L[(size_t)r * n + nq] = 1.0;
            b[r] = mg[i];
        }
        for (int t = 0; t < nb; t++, r++) { /* box face: +-(y0 + sq^T beta)_e + s <= its distance */
            int e = C->sub_box[t] >> 1, up = C->sub_box[t] & 1;
            const double *col = C->sqt + (size_t)e * nq;
            for (int p = 0; p < nq; p++) L[(size_t)r * n + p] = up ? col[p] : -col[p];
            L[(size_t)r * n + nq] = 1.0;
            double y0e = cen[e] + dot(f, col, nq);
            b[r] = up ? C->yhi[e] - y0e : y0e - C->ylo[e];
        }
        for (int p = 0; p < nq; p++) L[(size_t)r * n + p] = 0.0; /* the cap row, last */
        L[(size_t)r * n + nq] = 1.0;
        b[r] = C->sub_cap;
        r++;
        double LB, UB;
        C->sub_rounds++;
        if (lp_active(C, r, n, &LB, &UB) != 0) return -INFINITY; /* C->x: beta, s */
        double sv = C->x[nq];
        memcpy(z, cen, sizeof(double) * k);
        for (int p = 0; p < nq; p++) {
            double bp = f[p] + C->x[p];
            const double *u = C->sq + (size_t)p * k;
            for (int e = 0; e < k; e++) z[e] += bp * u[e];
        }
        /* the box faces nearer to z than sv and not yet rows, nearest first (ties: lower
         * coordinate), at most SUB_BOX_STEP a round: one pass keeping the nearest in order */
        int want = KC_SUB_BOX_MAX - nb < KC_SUB_BOX_STEP ? KC_SUB_BOX_MAX - nb : KC_SUB_BOX_STEP, nc = 0;
        int code[KC_SUB_BOX_STEP];
        double dist[KC_SUB_BOX_STEP];
        for (int e = 0; e < k && want > 0; e++) {
            double d1 = z[e] - C->ylo[e], d2 = C->yhi[e] - z[e];
            double d = d1 < d2 ? d1 : d2;
            if (!(d < (nc == want ? dist[nc - 1] : sv))) continue;
            int c = d1 < d2 ? 2 * e : 2 * e + 1, dup = 0;
            for (int t = 0; t < nb; t++)
                if (C->sub_box[t] == c) { dup = 1; break; }
            if (dup) continue;
            int at = nc < want ? nc++ : want - 1; /* insert, dropping the farthest when full */
            while (at > 0 && d < dist[at - 1]) { dist[at] = dist[at - 1]; code[at] = code[at - 1]; at--; }
            dist[at] = d; code[at] = c;
        }
        for (int t = 0; t < nc; t++) C->sub_box[nb++] = code[t];
        if (!nc) break;
    }
    return sub_ball(C, nrows, a, c0, z);
}

/* The dual bound of max s over the box shrunk by tol (*UB) and over the full box (*UBF) of the
 * dense LP's final multipliers on the cell's rows (the box faces' multipliers dropped, the rest
 * renormalised): valid for any nonnegative multipliers summing to one, so it certifies a reject
 * whatever the subspace did.  +inf if no row carries a multiplier. */
static void sub_dual(kc_ctx *C, int nrows, const double *a, double c0, double *UB, double *UBF) {
    int k = C->k, m = nrows + 1;
    double *g = C->sub_g, tot = 0.0, ub = 0.0;
    for (int t = 0; t < C->nW; t++)
        if (C->Wset[t] < m && C->lam[t] > 0.0) tot += C->lam[t];
    *UB = *UBF = INFINITY;
    if (!(tot > 0.0) || !isfinite(tot)) return;
    for (int e = 0; e < k; e++) g[e] = 0.0;
    for (int t = 0; t < C->nW; t++) {
        int i = C->Wset[t];
        if (i >= m || !(C->lam[t] > 0.0)) continue;
        double l = C->lam[t] / tot;
        const double *row = sub_row(C, nrows, i, a);
        for (int e = 0; e < k; e++) g[e] += l * row[e];
        ub += l * (i < nrows ? C->rhs[i] : c0);
    }
    double ubf = ub, tl = C->tol;
    for (int e = 0; e < k; e++) {
        double lo = C->ylo[e], hi = C->yhi[e];
        ub += blp_fmax(-g[e] * (lo + tl), -g[e] * (hi - tl));
        ubf += blp_fmax(-g[e] * lo, -g[e] * hi);
    }
    *UB = ub;
    *UBF = ubf;
}

/* The subspace LP's decision for cheb(): 1 with *t and *rout set when certified (a witness of
 * radius > tol + band: keep; a dual bound < tol - band: reject), else 0 (the box LP decides) */
static int sub_decide(kc_ctx *C, int nrows, const double *a, double c0, const double *ystart, double *yout,
                      double *t, double *rout) {
    double rw = sub_try(C, nrows, a, c0, ystart, C->sub_z);
    if (rw == -INFINITY) return 0;
    if (rw > C->tol + C->band) {
        C->sub_dec++;
        memcpy(yout, C->sub_z, sizeof(double) * C->k);
        *t = *rout = rw;
        return 1;
    }
    double UB, UBF;
    sub_dual(C, nrows, a, c0, &UB, &UBF);
    if (!(UB < C->tol - C->band)) return 0;
    C->sub_dec++;
    /* as the box LP's reject: the other side's row is redundant only if even the full box has
     * no point on this side */
    double v = UBF < -C->drop ? UBF : (UB < 0.0 ? (UB > -0.5 * C->drop ? UB : -0.5 * C->drop) : 0.0);
    *t = *rout = v;
    return 1;
}

/* Chebyshev LP of the cell (nrows path rows + domain rows) plus the extra row (a, c0): the t to
 * compare with tol (and -drop), the centre in yout.  With the dense LP (k <= dense_max_k) it is
 * started at ystart and its answer used only when certified; for larger k on a box domain the
 * box LP answers when certified; anything else goes to the caller's lp_fn (HiGHS).  *rout: the
 * radius of the ball around yout (the returned t, except for box-LP answers: see box_ball).
 * On an lp_fn failure sets C->error and returns -inf. */
static double cheb(kc_ctx *C, int nrows, const double *a, double c0, const double *ystart, double *yout,
                   double *rout) {
    int k = C->k;
    double t;
    C->lps++;
    if (C->dense) {
        int n = k + 1, m = C->mG + nrows + 2, r = 0;
        double *A = C->lpA, *b = C->lpb;
        for (int i = 0; i < C->mG; i++, r++) {
            memcpy(A + (size_t)r * n, C->G + (size_t)i * k, sizeof(double) * k);
            A[(size_t)r * n + k] = 1.0;
            b[r] = C->h[i];
        }
        for (int i = 0; i < nrows; i++, r++) {
            memcpy(A + (size_t)r * n, C->rows + (size_t)i * k, sizeof(double) * k);
            A[(size_t)r * n + k] = 1.0;
            b[r] = C->rhs[i];
        }
        memcpy(A + (size_t)r * n, a, sizeof(double) * k);
        A[(size_t)r * n + k] = 1.0;
        b[r] = c0;
        r++;
        for (int e = 0; e < k; e++) A[(size_t)r * n + e] = 0.0;
        A[(size_t)r * n + k] = 1.0;
        b[r] = C->cap;
        memcpy(C->x, ystart, sizeof(double) * k);
        double LB, UB;
        if (lp_active(C, m, n, &LB, &UB) == 0) {
            if (LB > C->tol + C->band) {
                memcpy(yout, C->x, sizeof(double) * k);
                *rout = LB;
                return LB;
            }
            if (UB < C->tol - C->band) {
                memcpy(yout, C->x, sizeof(double) * k);
                *rout = UB;
                return UB;
            }
        } else {
            C->lp_fail++;
        }
    }
    if (C->blp) {
        int m = nrows + 1;
        if (C->nq && sub_decide(C, nrows, a, c0, ystart, yout, &t, rout)) return t;
        memcpy(C->blp_A, C->rows, sizeof(double) * (size_t)nrows * k);
        memcpy(C->blp_A + (size_t)nrows * k, a, sizeof(double) * k);
        memcpy(C->blp_c, C->rhs, sizeof(double) * (size_t)nrows);
        C->blp_c[nrows] = c0;
        for (int i = 0; i < nrows; i++) C->blp_id[i] = C->rowid[i];
        C->blp_id[nrows] = -1;
        double LB, UB, UBF;
        long long cnt0[4], cnt1[4];
        blp_counters(C->blp, cnt0);
        int rc = blp_solve(C->blp, m, C->blp_id, C->blp_A, C->blp_c, ystart, yout, &LB, &UB, &UBF);
        blp_counters(C->blp, cnt1);
        C->lp_iters += cnt1[1] - cnt0[1];
        if (rc == 0) {
            if (LB > C->tol + C->band) {
                /* keep: yout lies in the box shrunk by tol with every margin >= LB; its ball is
                 * the smaller of LB and the distance to the box (>= tol) */
                *rout = box_ball(C, m, yout, ystart, LB);
                return LB;
            }
            if (UB < C->tol - C->band) {
                /* reject; the other side's row is redundant only if even the full box has no
                 * point on this side (UBF < -drop): else the returned value keeps it */
                if (UBF < -C->drop) { *rout = UBF; return UBF; }
                double t = UB < 0.0 ? UB : 0.0;
                t = t > -0.5 * C->drop ? t : -0.5 * C->drop;
                *rout = t;
                return t;
            }
        } else {
            C->lp_fail++;
        }
    }
    /* not certified, or k too large for the dense LP: HiGHS through the caller */
    C->fallbacks++;
    if (!C->lp_fn) { C->error = KC_ERR_NO_LP_FN; return -INFINITY; }
    if (C->lp_fn(C->lp_user, nrows, C->rowid, C->rows, C->rhs, a, c0, &t, yout) != 0) {
        C->error = KC_ERR_LP_FN;
        return -INFINITY;
    }
    *rout = t;
    return t;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

static inline double box_max(const kc_ctx *C, const double *a, double a0, double sgn) {
    if (!C->bounded) return INFINITY;
    double s = sgn * a0;
    for (int e = 0; e < C->k; e++) {
        double u = sgn * a[e] * C->ylo[e], w = sgn * a[e] * C->yhi[e];
        s += u > w ? u : w;
    }
    return s;
}

/* ------------------------------------------------------------------ layers */

/* Full rank certified without the SVD: nc = min(rows, cols) <= RANK_FAST_MAX; the Gram matrix
 * of the shorter side, S = M^T M or M M^T (nc x nc), and its Cholesky factor R.  sigma_min(M) =
 * sigma_min(R) >= 1 / ||R^-1||_F and sigma_max(M) <= ||M||_F; if the ratio of these bounds is
 * above RANK_FAST_MARGIN (far above RANK_REL, so the squared condition number and rounding in S
 * cannot move the answer) and sigma_max is far from the zero threshold, the SVD's rank is nc.
 * Returns nc, or -1 when undecided (then the Jacobi SVD decides). */
static int rank_full_fast(kc_ctx *C, const double *M, int rows, int cols, double mscale) {
    int nc = rows < cols ? rows : cols;
    if (nc == 0 || nc > KC_RANK_FAST_MAX) return -1;
    double S[KC_RANK_FAST_MAX * KC_RANK_FAST_MAX], fro = 0.0;
    (void)C;
    if (cols <= rows) { /* S = M^T M */
        for (int p = 0; p < nc; p++)
            for (int q = 0; q <= p; q++) {
                double t = 0.0;
                for (int i = 0; i < rows; i++) t += M[(size_t)i * cols + p] * M[(size_t)i * cols + q];
                S[p * nc + q] = t;
            }
    } else { /* S = M M^T */
        for (int p = 0; p < nc; p++)
            for (int q = 0; q <= p; q++) S[p * nc + q] = dot(M + (size_t)p * cols, M + (size_t)q * cols, cols);
    }
    for (int p = 0; p < nc; p++) fro += S[p * nc + p];
    fro = sqrt(fro);
    if (!(fro > KC_RANK_FAST_MARGIN * KC_RANK_ZERO_REL * mscale)) return -1;
    /* Cholesky S = L L^T in place (lower triangle) */
    for (int j = 0; j < nc; j++) {
        double d = S[j * nc + j];
        for (int q = 0; q < j; q++) d -= S[j * nc + q] * S[j * nc + q];
        if (!(d > 0.0)) return -1;
        d = sqrt(d);
        S[j * nc + j] = d;
        for (int i = j + 1; i < nc; i++) {
            double t = S[i * nc + j];
            for (int q = 0; q < j; q++) t -= S[i * nc + q] * S[j * nc + q];
            S[i * nc + j] = t / d;
        }
    }
    /* ||L^-1||_F: solve L X = I column by column (forward substitution) */
    double inv2 = 0.0, x[KC_RANK_FAST_MAX];
    for (int c = 0; c < nc; c++) {
        for (int i = 0; i < nc; i++) {
            double t = i == c ? 1.0 : 0.0;
            for (int q = c; q < i; q++) t -= S[i * nc + q] * x[q];
            x[i] = i < c ? 0.0 : t / S[i * nc + i];
            inv2 += x[i] * x[i];
        }
    }
    if (!(inv2 > 0.0) || !isfinite(inv2)) return -1;
    double smin_lb = 1.0 / sqrt(inv2);
    return smin_lb > KC_RANK_FAST_MARGIN * fro ? nc : -1;
}

/* singular-value rank of M (rows x cols), numpy-style threshold, relative to mscale for zero */
static int rank_of(kc_ctx *C, const double *M, int rows, int cols, double mscale) {
    int fast = rank_full_fast(C, M, rows, cols, mscale);
    if (fast >= 0) return fast;
    /* one-sided Jacobi on the columns of the smaller side */
    int nc, len;
    double *J = C->jac;
    if (cols <= rows) {
        nc = cols; len = rows;
        for (int c = 0; c < nc; c++)
            for (int i = 0; i < len; i++) J[(size_t)c * len + i] = M[(size_t)i * cols + c];
    } else {
        nc = rows; len = cols;
        memcpy(J, M, sizeof(double) * (size_t)rows * cols);
    }
    if (nc == 0) return 0;
    if (len > 64 && len > 2 * nc) {
        /* long vectors (len = k = 784 for images, nc = a layer's width): Householder QR first,
         * [u_1 .. u_nc] = Q R, so that Jacobi runs on R's nc columns of length nc (the same
         * singular values; O(nc^2 len) once instead of O(nc^2 len) per sweep) */
        double *v = C->v;
        for (int c = 0; c < nc; c++) {
            double *x = J + (size_t)c * len;
            double nx = sqrt(dot(x + c, x + c, len - c));
            if (nx == 0.0) continue;
            double alpha = x[c] > 0 ? -nx : nx;
            for (int i = c; i < len; i++) v[i] = x[i];
            v[c] -= alpha;
            double vv = dot(v + c, v + c, len - c);
            x[c] = alpha;
            for (int i = c + 1; i < len; i++) x[i] = 0.0;
            if (!(vv > 0.0)) continue;
            for (int d = c + 1; d < nc; d++) {
                double *y = J + (size_t)d * len;
                double f = 2.0 * dot(v + c, y + c, len - c) / vv;
                for (int i = c; i < len; i++) y[i] -= f * v[i];
            }
        }
        for (int c = 0; c < nc; c++)  /* R's column c (rows 0..c), packed with length nc */
            for (int i = 0; i < nc; i++) J[(size_t)c * nc + i] = i <= c ? J[(size_t)c * len + i] : 0.0;
        len = nc;
    }
    for (int sweep = 0; sweep < KC_JACOBI_SWEEPS; sweep++) {
        int rot = 0;
        for (int p = 0; p < nc - 1; p++)
            for (int q = p + 1; q < nc; q++) {
                double *u = J + (size_t)p * len, *w = J + (size_t)q * len;
                double al = dot(u, u, len), be = dot(w, w, len), ga = dot(u, w, len);
                if (fabs(ga) <= KC_JACOBI_ORTH * sqrt(al * be) || ga == 0.0) continue;
                rot = 1;
                double zeta = (be - al) / (2.0 * ga);
                double tt = (zeta >= 0 ? 1.0 : -1.0) / (fabs(zeta) + sqrt(1.0 + zeta * zeta));
                double cs = 1.0 / sqrt(1.0 + tt * tt), sn = cs * tt;
                for (int i = 0; i < len; i++) {
                    double x1 = u[i], x2 = w[i];
                    u[i] = cs * x1 - sn * x2;
                    w[i] = sn * x1 + cs * x2;
                }
            }
        if (!rot) break;
    }
    double s0 = 0.0, *sv = C->v; /* v holds max(k+1, widest layer) + 1 values */
    for (int c = 0; c < nc; c++) {
        double s = sqrt(dot(J + (size_t)c * len, J + (size_t)c * len, len));
        sv[c] = s;
        if (s > s0) s0 = s;
    }
    if (!(s0 > KC_RANK_ZERO_REL * mscale)) return 0;
    double thr = KC_RANK_REL * (s0 > KC_TINY ? s0 : KC_TINY);
    int r = 0;
    for (int c = 0; c < nc; c++)
        if (sv[c] > thr) r++;
    return r;
}

static void finish_layer(kc_ctx *C, int l, double Mmax) {
    int k = C->k, n = C->widths[l];
    double ms = C->wscale[l] * Mmax + KC_TINY;
    C->mscale[l] = ms;
    double *H = C->H[l], *h0 = C->h0[l];
    const unsigned char *lin = C->linear + C->offsets[l];
    for (int j = 0; j < n; j++) {
        if (lin[j]) { /* no activation: nothing to split, bit 1 (factor 1), no path row */
            C->nrm[l][j] = 0.0;
            C->pre[l][j] = 1;
            continue;
        }
        if (C->gfirst[C->offsets[l] + j] >= 0) { /* a max-group member: decided by its group */
            C->nrm[l][j] = 0.0;
            C->pre[l][j] = 0; /* screen() skips it; group_screen() and kc_run decide the group */
            C->gpre[C->offsets[l] + j] = -1;
            continue;
        }
        double nr = sqrt(dot(H + (size_t)j * k, H + (size_t)j * k, k));
        int cst = nr <= KC_CONST_NEURON_REL * ms;
        C->nrm[l][j] = cst ? 0.0 : nr;
        double safe = cst ? 1.0 : nr;
        for (int e = 0; e < k; e++) C->Hn[l][(size_t)j * k + e] = H[(size_t)j * k + e] / safe;
        C->h0n[l][j] = h0[j] / safe;
        C->pre[l][j] = cst ? (signed char)(h0[j] > 0) : (signed char)-1;
    }
}

static void layer0(kc_ctx *C) {
    int k = C->k, n = C->widths[0];
    memcpy(C->H[0], C->W[0], sizeof(double) * (size_t)n * k);
    memcpy(C->h0[0], C->b[0], sizeof(double) * n);
    finish_layer(C, 0, 1.0);
}

/* the factor of neuron i's output on the current path: 1 if its bit is 1, else its slope
 * (0 for ReLU); linear neurons have bit 1 */
static inline double gate(const kc_ctx *C, int i) { return C->bits[i] ? 1.0 : C->slope[i]; }

/* the rows of layer l's output map on the current path (gate * H row, rows with gate 0 left
 * out) into Mbuf; returns the row count, and the largest |entry| in *Mmax */
static int gated_rows(kc_ctx *C, int l, double *Mmax) {
    int k = C->k, n = C->widths[l], o = C->offsets[l];
    const double *H = C->H[l];
    double *M = C->Mbuf, mx = 0.0;
    int na = 0;
    for (int i = 0; i < n; i++) {
        double g = gate(C, o + i);
        if (g == 0.0) continue;
        for (int e = 0; e < k; e++) {
            double z = g * H[(size_t)i * k + e];
            M[(size_t)na * k + e] = z;
            if (fabs(z) > mx) mx = fabs(z);
        }
        na++;
    }
    *Mmax = mx;
    return na;
}

/* the rank of layer l's output map on the current path; *Mmax as gated_rows().  With Hq the
 * rows are taken in the basis sq (nq columns), with the same largest |entry| of the k-long rows */
static int layer_rank(kc_ctx *C, int l, double *Mmax) {
    if (!C->Hq) {
        int na = gated_rows(C, l, Mmax);
        return rank_of(C, C->Mbuf, na, C->k, C->mscale[l]);
    }
    int k = C->k, nq = C->nq, n = C->widths[l], o = C->offsets[l];
    const double *H = C->H[l], *Hq = C->Hq[l];
    double *M = C->Mbuf, mx = 0.0;
    int na = 0;
    for (int i = 0; i < n; i++) {
        double g = gate(C, o + i), hm = 0.0;
        if (g == 0.0) continue;
        for (int e = 0; e < k; e++) {
            double z = fabs(H[(size_t)i * k + e]);
            if (z > hm) hm = z;
        }
        if (fabs(g) * hm > mx) mx = fabs(g) * hm;
        for (int p = 0; p < nq; p++) M[(size_t)na * nq + p] = g * Hq[(size_t)i * nq + p];
        na++;
    }
    *Mmax = mx;
    return rank_of(C, M, na, nq, C->mscale[l]);
}

/* enter layer l (>= 1) from slot l-1 and the bits of layer l-1 */
static void transition(kc_ctx *C, int l) {
    int k = C->k, np = C->widths[l - 1], n = C->widths[l], op = C->offsets[l - 1];
    const double *Hp = C->H[l - 1], *hp = C->h0[l - 1], *Wl = C->W[l], *bl = C->b[l];
    double Mmax;
    C->rank[l] = layer_rank(C, l - 1, &Mmax);
    double *H = C->H[l], *h0 = C->h0[l];
    int nq = C->Hq ? C->nq : 0;
    const double *Hqp = nq ? C->Hq[l - 1] : NULL;
    for (int j = 0; j < n; j++) {
        double *hr = H + (size_t)j * k, *hq = nq ? C->Hq[l] + (size_t)j * nq : NULL;
        for (int e = 0; e < k; e++) hr[e] = 0.0;
        for (int p = 0; p < nq; p++) hq[p] = 0.0;
        double s = 0.0;
        const double *wr = Wl + (size_t)j * np;
        const int *nz = C->nzptr[l] ? C->nzcol[l] + C->nzptr[l][j] : NULL;
        int cnt = nz ? C->nzptr[l][j + 1] - C->nzptr[l][j] : np;
        for (int q = 0; q < cnt; q++) { /* W's row j: every entry, or its nonzeros in order */
            int i = nz ? nz[q] : q;
            double g = gate(C, op + i);
            if (g == 0.0) continue;
            double wv = wr[i] * g;
            const double *hpr = Hp + (size_t)i * k;
            for (int e = 0; e < k; e++) hr[e] += wv * hpr[e];
            for (int p = 0; p < nq; p++) hq[p] += wv * Hqp[(size_t)i * nq + p];
            s += wv * hp[i];
        }
        h0[j] = s + bl[j];
    }
    finish_layer(C, l, Mmax);
}

static int final_rank(kc_ctx *C) {
    double Mmax;
    return layer_rank(C, C->L - 1, &Mmax);
}

/* fix the bits of layer l's hyperplanes (from index start) that miss the cell */
static void screen(kc_ctx *C, int l, int start, const double *yc, double r, int nrows) {
    int k = C->k, n = C->widths[l];
    double tol = C->tol;
    signed char *pre = C->pre[l];
    double *rw = C->rowbuf;
    for (int j = start; j < n; j++) {
        if (pre[j] != -1) continue;
        const double *a = C->Hn[l] + (size_t)j * k;
        double a0 = C->h0n[l][j];
        double s = dot(a, yc, k) + a0;
        if (fabs(s) < r) continue; /* the ball is cut: both sides exist here */
        int bit = s > 0;           /* the ball lies on side `bit`: test the other side */
        double bound, rhs;
        if (bit) {
            bound = box_max(C, a, a0, -1.0);
            for (int e = 0; e < k; e++) rw[e] = a[e];
            rhs = -a0;
        } else {
            bound = box_max(C, a, a0, 1.0);
            for (int e = 0; e < k; e++) rw[e] = -a[e];
            rhs = a0;
        }
        if (bound < -C->drop) { pre[j] = (signed char)bit; C->screened++; continue; }
        if (bound <= tol) { pre[j] = (signed char)(bit + 2); C->screened++; continue; }
        double rr, t = cheb(C, nrows, rw, rhs, yc, C->ya, &rr);
        if (C->error) return;
        if (t <= tol) {
            pre[j] = (signed char)(t < -C->drop ? bit : bit + 2);
            C->screened++;
        }
    }
}

/* screen() from the cell's vertex set: a hyperplane with every vertex strictly on one side
 * (beyond VREP_EPS) misses the cell, its bit is fixed and it needs no row; the others are left
 * to the search (which gives the cell back to the LPs if one passes within VREP_EPS of a vertex) */
static void vscreen(kc_ctx *C, int l, int start) {
    int k = C->k, n = C->widths[l];
    signed char *pre = C->pre[l];
    for (int j = start; j < n; j++) {
        if (pre[j] != -1) continue;
        double lo, hi;
        int cls = vr_eval(C->vr, C->Hn[l] + (size_t)j * k, C->h0n[l][j], KC_VREP_EPS, &lo, &hi);
        if (cls == VR_NEG || cls == VR_POS) {
            pre[j] = (signed char)cls;
            C->screened++;
            C->vdec++;
        }
    }
}

static void group_screen(kc_ctx *C, int l, int start, const double *yc, double r, int nrows);

/* screen with the vertex set where it is known, else with balls, bounds and LPs; then the max
 * groups (whose members screen() and vscreen() skip) */
static void screen_layer(kc_ctx *C, int l, int start, const double *yc, double r, int nrows) {
    if (C->vr && vr_valid(C->vr)) vscreen(C, l, start);
    else screen(C, l, start, yc, r, nrows);
    if (C->has_groups && !C->error) group_screen(C, l, start, yc, r, nrows);
}

/* the vertex set of the cell of the path rows (kc_start): the box, cut by each row in turn;
 * unknown (the LPs decide) if a row passes within VREP_EPS of a vertex */
static void rebuild_vertices(kc_ctx *C, int nrows) {
    VRep *V = C->vr;
    int k = C->k;
    if (vr_box(V, C->ylo, C->yhi)) return;
    double *a = C->rowbuf;
    for (int q = 0; q < nrows; q++) {
        const double *row = C->rows + (size_t)q * k; /* row . y <= rhs: s = rhs - row . y >= 0 */
        for (int e = 0; e < k; e++) a[e] = -row[e];
        double lo, hi;
        int cls = vr_eval(V, a, C->rhs[q], KC_VREP_EPS, &lo, &hi);
        if (cls == VR_POS) continue;
        if (cls != VR_MIXED || vr_split(V, 2 * k + C->rowid[q] / 2, KC_VREP_RHO)) {
            vr_invalidate(V);
            C->vlost++;
            return;
        }
        vr_keep_side(V, 1);
    }
}

/* the exact inscribed radius at y of the cell's path rows, the box and the side of (a, a0)
 * (side 1: a . y + a0 >= 0) */
static double side_ball(const kc_ctx *C, int nrows, const double *y, const double *a, double a0, int side) {
    double sa = dot(a, y, C->k) + a0;
    double rb = box_dist(C, y), rm = min_margin(C, C->rows, C->rhs, nrows, y), rs = side ? sa : -sa;
    double r = rb < rm ? rb : rm;
    return rs < r ? rs : r;
}

/* ------------------------------------------------------------------ context */

#define KC_FREE_LAYERS(arr)                                   \
    do {                                                      \
        if (C->arr) {                                         \
            for (int l_ = 0; l_ < C->L; l_++) free(C->arr[l_]); \
            free(C->arr);                                     \
        }                                                     \
    } while (0)

void kc_free(kc_ctx *C) {
    if (!C) return;
    KC_FREE_LAYERS(W); KC_FREE_LAYERS(b); KC_FREE_LAYERS(H); KC_FREE_LAYERS(h0);
    KC_FREE_LAYERS(Hn); KC_FREE_LAYERS(h0n); KC_FREE_LAYERS(nrm); KC_FREE_LAYERS(pre);
    KC_FREE_LAYERS(nzptr); KC_FREE_LAYERS(nzcol);
    free(C->widths); free(C->offsets); free(C->layer_of); free(C->bnd); free(C->wscale);
    free(C->slope); free(C->linear); free(C->gfirst); free(C->gend); free(C->gpre);
    free(C->G); free(C->h); free(C->ylo); free(C->yhi); free(C->mscale); free(C->rank);
    free(C->bits); free(C->rows); free(C->rhs); free(C->rowid);
    free(C->st); free(C->st_y); free(C->st_row);
    vr_free(C->vr);
    free(C->lpA); free(C->lpb); free(C->Q); free(C->R); free(C->x); free(C->p);
    free(C->lam); free(C->Qc); free(C->Wset); free(C->inW);
    free(C->v); free(C->ya); free(C->yi); free(C->yc); free(C->rowbuf); free(C->Mbuf); free(C->jac);
    free(C->ebits); free(C->ey); free(C->er); free(C->erank); free(C->layer_counts);
    free(C->sq); free(C->sqt); free(C->sub_A); free(C->sub_m); free(C->sub_z); free(C->sub_g); free(C->sub_box);
    free(C->rq); free(C->rq_ok); free(C->sy0); free(C->sub_y); free(C->sqc); free(C->sub_f);
    if (C->Hq) {
        for (int l = 0; l < C->L; l++) free(C->Hq[l]);
        free(C->Hq);
    }
    blp_free(C->blp); free(C->blp_A); free(C->blp_c); free(C->blp_id); free(C->v2); free(C->v3);
    free(C);
}

int kc_version(void) { return KC_VERSION; }
int kc_n_neurons(const kc_ctx *C) { return C->N; }
int kc_error(const kc_ctx *C) { return C->error; }
int kc_vertex_sets(const kc_ctx *C) { return C->vr != NULL; }
int kc_lp_kind(const kc_ctx *C) { return C->dense ? KC_LP_DENSE : (C->blp ? KC_LP_BOX : KC_LP_CALLBACK); }

static int valid_config(const kc_config *cfg) {
    if (!cfg || cfg->k < 1 || cfg->L < 1 || cfg->mG < 0 || cfg->emax < 1) return 0;
    if (!cfg->widths || !cfg->W || !cfg->b || !cfg->wscale) return 0;
    if (cfg->mG > 0 && (!cfg->G || !cfg->h)) return 0;
    if (cfg->bounded && (!cfg->ylo || !cfg->yhi)) return 0;
    if (!(cfg->tol >= 0.0) || !(cfg->band_rel >= 0.0)) return 0;
    long long N = 0;
    for (int l = 0; l < cfg->L; l++) {
        if (cfg->widths[l] < 1) return 0;
        N += cfg->widths[l];
    }
    return N < (1 << 28); /* row ids 2*i+b and stack sizes stay far inside int */
}

/* 1 if the domain rows G y <= h are exactly the faces of the bounding box [ylo, yhi] */
static int is_box_domain(const kc_ctx *C) {
    int k = C->k;
    if (!C->bounded || C->mG != 2 * k) return 0;
    int seen_hi = 0, seen_lo = 0;
    for (int i = 0; i < C->mG; i++) {
        const double *g = C->G + (size_t)i * k;
        int e0 = -1;
        for (int e = 0; e < k; e++)
            if (g[e] != 0.0) {
                if (e0 >= 0) return 0;
                e0 = e;
            }
        if (e0 < 0) return 0;
        double want = g[e0] == 1.0 ? C->yhi[e0] : (g[e0] == -1.0 ? -C->ylo[e0] : NAN);
        if (!(fabs(C->h[i] - want) <= 1e-12 * (1.0 + fabs(want)))) return 0;
        if (g[e0] > 0) seen_hi++; else seen_lo++;
    }
    return seen_hi == k && seen_lo == k;
}

kc_ctx *kc_new(const kc_config *cfg, int *err) {
    int dummy;
    if (!err) err = &dummy;
    *err = KC_OK;
    if (!valid_config(cfg)) { *err = KC_ERR_ARG; return NULL; }
    kc_ctx *C = (kc_ctx *)calloc(1, sizeof(kc_ctx));
    if (!C) { *err = KC_ERR_NOMEM; return NULL; }
    int k = cfg->k, L = cfg->L;
    const int *widths = cfg->widths;
    C->k = k; C->L = L; C->tol = cfg->tol; C->cap = KC_BALL_CAP; C->drop = KC_DROP_MARGIN;
    C->band = cfg->band_rel * cfg->tol + KC_BAND_ABS;
    C->dense = k <= cfg->dense_max_k;
    C->lp_fn = cfg->lp_fn; C->lp_user = cfg->lp_user;
    int N = 0, wmax = k;
    for (int l = 0; l < L; l++) { N += widths[l]; if (widths[l] > wmax) wmax = widths[l]; }
    C->N = N;
    size_t K = (size_t)k, n = K + 1;

    /* 1. allocate everything (zalloc records a failure; nothing is written before the check) */
    C->widths = (int *)zalloc(C, L, sizeof(int));
    C->offsets = (int *)zalloc(C, (size_t)L + 1, sizeof(int));
    C->layer_of = (int *)zalloc(C, (size_t)N + 1, sizeof(int));
    C->bnd = (int *)zalloc(C, (size_t)N + 1, sizeof(int));
    C->W = (double **)zalloc(C, L, sizeof(double *));
    C->nzptr = (int **)zalloc(C, L, sizeof(int *));
    C->nzcol = (int **)zalloc(C, L, sizeof(int *));
    C->b = (double **)zalloc(C, L, sizeof(double *));
    C->H = (double **)zalloc(C, L, sizeof(double *));
    C->h0 = (double **)zalloc(C, L, sizeof(double *));
    C->Hn = (double **)zalloc(C, L, sizeof(double *));
    C->h0n = (double **)zalloc(C, L, sizeof(double *));
    C->nrm = (double **)zalloc(C, L, sizeof(double *));
    C->pre = (signed char **)zalloc(C, L, sizeof(signed char *));
    if (C->oom) goto fail;
    for (int l = 0; l < L; l++) {
        size_t in = l ? (size_t)widths[l - 1] : K, w = (size_t)widths[l];
        C->W[l] = (double *)zalloc(C, w * in, sizeof(double));
        C->b[l] = (double *)zalloc(C, w, sizeof(double));
        C->H[l] = (double *)zalloc(C, w * K, sizeof(double));
        C->h0[l] = (double *)zalloc(C, w, sizeof(double));
        C->Hn[l] = (double *)zalloc(C, w * K, sizeof(double));
        C->h0n[l] = (double *)zalloc(C, w, sizeof(double));
        C->nrm[l] = (double *)zalloc(C, w, sizeof(double));
        C->pre[l] = (signed char *)zalloc(C, w, 1);
    }
    C->wscale = (double *)zalloc(C, L, sizeof(double));
    C->slope = (double *)zalloc(C, (size_t)N + 1, sizeof(double));
    C->linear = (unsigned char *)zalloc(C, (size_t)N + 1, 1);
    C->gfirst = (int *)zalloc(C, (size_t)N + 1, sizeof(int));
    C->gend = (int *)zalloc(C, (size_t)N + 1, sizeof(int));
    C->gpre = (signed char *)zalloc(C, (size_t)N + 1, 1);
    C->mG = cfg->mG;
    C->G = (double *)zalloc(C, (size_t)cfg->mG * K, sizeof(double));
    C->h = (double *)zalloc(C, cfg->mG, sizeof(double));
    C->bounded = cfg->bounded != 0;
    C->ylo = (double *)zalloc(C, K, sizeof(double));
    C->yhi = (double *)zalloc(C, K, sizeof(double));
    C->mscale = (double *)zalloc(C, L, sizeof(double));
    C->rank = (int *)zalloc(C, (size_t)L + 1, sizeof(int));
    C->bits = (unsigned char *)zalloc(C, (size_t)N + 1, 1);
    C->rows = (double *)zalloc(C, ((size_t)N + 1) * K, sizeof(double));
    C->rhs = (double *)zalloc(C, (size_t)N + 1, sizeof(double));
    C->rowid = (int *)zalloc(C, (size_t)N + 1, sizeof(int));
    C->st_cap = 2 * N + 8;
    C->st = (Entry *)zalloc(C, C->st_cap, sizeof(Entry));
    C->st_y = (double *)zalloc(C, (size_t)C->st_cap * K, sizeof(double));
    C->st_row = (double *)zalloc(C, (size_t)C->st_cap * n, sizeof(double));
    {
        if (!C->dense) n = (size_t)(widths[0] < k ? widths[0] : k) + 1; /* the subspace LP's size */
        size_t m = (size_t)cfg->mG + N + 4 + KC_SUB_BOX_MAX;
        C->lpA = (double *)zalloc(C, m * n, sizeof(double));
        C->lpb = (double *)zalloc(C, m, sizeof(double));
        C->inW = (unsigned char *)zalloc(C, m, 1);
        C->Q = (double *)zalloc(C, n * n, sizeof(double));
        C->R = (double *)zalloc(C, n * n, sizeof(double));
        C->x = (double *)zalloc(C, n, sizeof(double));
        C->p = (double *)zalloc(C, n, sizeof(double));
        C->lam = (double *)zalloc(C, n, sizeof(double));
        C->Qc = (double *)zalloc(C, n, sizeof(double));
        C->Wset = (int *)zalloc(C, n + 1, sizeof(int));
        n = K + 1;
    }
    C->v = (double *)zalloc(C, (n > (size_t)wmax ? n : (size_t)wmax) + 1, sizeof(double));
    C->ya = (double *)zalloc(C, K, sizeof(double));
    C->yi = (double *)zalloc(C, K, sizeof(double));
    C->yc = (double *)zalloc(C, K, sizeof(double));
    C->rowbuf = (double *)zalloc(C, K, sizeof(double));
    C->Mbuf = (double *)zalloc(C, (size_t)wmax * K, sizeof(double));
    C->jac = (double *)zalloc(C, (size_t)wmax * K, sizeof(double));
    C->emax = cfg->emax;
    C->ebits = (unsigned char *)zalloc(C, (size_t)cfg->emax * N, 1);
    C->ey = (double *)zalloc(C, (size_t)cfg->emax * K, sizeof(double));
    C->er = (double *)zalloc(C, cfg->emax, sizeof(double));
    C->erank = (int *)zalloc(C, (size_t)cfg->emax * L, sizeof(int));
    C->layer_counts = (long long *)zalloc(C, L, sizeof(long long));
    if (C->oom) goto fail;

    /* 2. fill in */
    memcpy(C->widths, widths, sizeof(int) * L);
    int off = 0;
    for (int l = 0; l < L; l++) { C->offsets[l] = off; off += widths[l]; }
    C->offsets[L] = N;
    for (int l = 0; l < L; l++)
        for (int i = C->offsets[l]; i < C->offsets[l + 1]; i++) C->layer_of[i] = l;
    for (int l = 1; l <= L; l++) C->bnd[C->offsets[l]] = l;
    size_t wo = 0, bo = 0;
    for (int l = 0; l < L; l++) {
        size_t in = l ? (size_t)widths[l - 1] : K, w = (size_t)widths[l];
        memcpy(C->W[l], cfg->W + wo, sizeof(double) * w * in);
        wo += w * in;
        size_t nnz = 0;
        for (size_t q = 0; l > 0 && q < w * in; q++) nnz += C->W[l][q] != 0.0;
        if (l > 0 && 2 * nnz <= w * in) { /* sparse: the transition reads only the nonzeros */
            C->nzptr[l] = (int *)zalloc(C, w + 1, sizeof(int));
            C->nzcol[l] = (int *)zalloc(C, nnz + 1, sizeof(int));
            if (C->nzptr[l] && C->nzcol[l]) {
                int q = 0;
                for (size_t j = 0; j < w; j++) {
                    C->nzptr[l][j] = q;
                    for (size_t i = 0; i < in; i++)
                        if (C->W[l][j * in + i] != 0.0) C->nzcol[l][q++] = (int)i;
                }
                C->nzptr[l][w] = q;
            }
        }
        memcpy(C->b[l], cfg->b + bo, sizeof(double) * w);
        bo += w;
    }
    memcpy(C->wscale, cfg->wscale, sizeof(double) * L);
    if (cfg->slope) memcpy(C->slope, cfg->slope, sizeof(double) * (size_t)N);
    if (cfg->linear)
        for (int i = 0; i < N; i++) C->linear[i] = cfg->linear[i] ? 1 : 0;
    for (int i = 0; i < N; i++) C->gfirst[i] = C->gend[i] = -1;
    if (cfg->group) { /* contiguous runs of one id within one layer; a run of one member is no group */
        for (int i = 0; i < N;) {
            int g = cfg->group[i], e = i + 1;
            if (g < 0) { i++; continue; }
            while (e < N && cfg->group[e] == g && C->layer_of[e] == C->layer_of[i]) e++;
            for (int q = e; q < N; q++)
                if (cfg->group[q] == g && C->layer_of[q] == C->layer_of[i]) { kc_free(C); *err = KC_ERR_ARG; return NULL; }
            if (e - i > 1) {
                for (int q = i; q < e; q++) { C->gfirst[q] = i; C->gend[q] = e; C->slope[q] = 0.0; C->linear[q] = 0; }
                C->has_groups = 1;
            } else {
                C->linear[i] = 1; /* the maximum of one input is that input */
            }
            i = e;
        }
    }
    if (cfg->mG) {
        memcpy(C->G, cfg->G, sizeof(double) * (size_t)cfg->mG * K);
        memcpy(C->h, cfg->h, sizeof(double) * (size_t)cfg->mG);
    }
    if (C->bounded) {
        memcpy(C->ylo, cfg->ylo, sizeof(double) * K);
        memcpy(C->yhi, cfg->yhi, sizeof(double) * K);
    }
    /* 3. the box LP, where the domain is exactly its bounding box and k > BOXLP_MIN_K (or the
     * dense LP is not used); once made, it replaces the dense LP */
    if ((!C->dense || k > KC_BOXLP_MIN_K) && is_box_domain(C)) {
        C->blp = blp_new(k, N + 1, C->ylo, C->yhi, C->tol, C->cap);
        C->blp_A = (double *)zalloc(C, (size_t)(N + 1) * K, sizeof(double));
        C->blp_c = (double *)zalloc(C, (size_t)N + 1, sizeof(double));
        C->blp_id = (long long *)zalloc(C, (size_t)N + 1, sizeof(long long));
        C->v2 = (double *)zalloc(C, K, sizeof(double));
        C->v3 = (double *)zalloc(C, K, sizeof(double));
        if (C->oom) goto fail;
        if (C->blp) {
            blp_set_early(C->blp, C->tol + C->band, C->tol - C->band);
            C->dense = 0;
        }
        /* blp_new gives NULL for a box not wider than 2 tol, or on allocation failure: then the
         * dense LP (if k allows it) and lp_fn decide, as without the box LP */
    }
    if (C->blp && 2 * widths[0] <= k) {
        if (sub_setup(C) < 0) goto fail;
        if (C->nq == widths[0] && hq_setup(C) < 0) goto fail;
    }
    /* 4. vertex sets, on box domains of low dimension */
    if (k <= cfg->vrep_max_k && is_box_domain(C) && !C->has_groups) { /* vertex sets cut one row at a time */
        C->vr = vr_new(k, 2 * k + N, KC_VREP_CAP, ((size_t)64 << 20) / ((sizeof(double) + sizeof(int)) * K));
        /* NULL (no memory): the LPs decide everything, as without vertex sets */
    }
    return C;
fail:
    kc_free(C);
    *err = KC_ERR_NOMEM;
    return NULL;
}

static void push(kc_ctx *C, int depth, int nrows, int has_row, int row_id, unsigned char bit, const double *y,
                 double r, const double *row, double rhs, size_t voff, int vn) {
    int k = C->k, s = C->nst++;
    Entry *e = C->st + s;
    e->depth = depth; e->nrows = nrows; e->has_row = has_row; e->row_id = row_id; e->bit = bit; e->r = r;
    e->voff = voff; e->vn = vn;
    memcpy(C->st_y + (size_t)s * k, y, sizeof(double) * k);
    if (has_row) {
        memcpy(C->st_row + (size_t)s * (k + 1), row, sizeof(double) * k);
        C->st_row[(size_t)s * (k + 1) + k] = rhs;
    }
}

/* push the current node (its vertex set, if known, onto the arena) */
static void push_cur(kc_ctx *C, int depth, int nrows, const double *yc, double r) {
    size_t off = 0;
    int vn = C->vr ? vr_push_cur(C->vr, &off) : -1;
    push(C, depth, nrows, 0, 0, depth ? C->bits[depth - 1] : 0, yc, r, NULL, 0.0, off, vn);
}

/* append the row of neuron i (direction a, offset a0) on side bit to the path */
static inline int add_row(kc_ctx *C, int nrows, int i, int bit, const double *a, double a0) {
    int k = C->k;
    double *row = C->rows + (size_t)nrows * k;
    if (bit) {
        for (int q = 0; q < k; q++) row[q] = -a[q];
        C->rhs[nrows] = a0;
    } else {
        memcpy(row, a, sizeof(double) * k);
        C->rhs[nrows] = -a0;
    }
    C->rowid[nrows] = 2 * i + bit;
    if (C->rq_ok) C->rq_ok[nrows] = 0;
    return nrows + 1;
}

/* append the rows of "member i is the maximum of its group" (z_t - z_i <= 0 for every other
 * member t, unit rows; ids 2*i+1 for the first row, then 2*t, so that equal id prefixes mean
 * equal rows) at path position nrows; returns the new row count.  A comparison that is constant
 * on the domain adds no row; *dead is set if it makes i lose (z_t > z_i, or a tie with t < i:
 * ties go to the first member) */
static int group_rows(kc_ctx *C, int i, int nrows, int *dead) {
    int k = C->k, l = C->layer_of[i], o = C->offsets[l], first = 1;
    const double *H = C->H[l], *h0 = C->h0[l];
    const double *hi = H + (size_t)(i - o) * k;
    double thr = KC_CONST_NEURON_REL * C->mscale[l];
    *dead = 0;
    for (int t = C->gfirst[i]; t < C->gend[i]; t++) {
        if (t == i) continue;
        const double *ht = H + (size_t)(t - o) * k;
        double *row = C->rows + (size_t)nrows * k, nr = 0.0;
        for (int q = 0; q < k; q++) {
            row[q] = ht[q] - hi[q];
            nr += row[q] * row[q];
        }
        nr = sqrt(nr);
        double d0 = h0[t - o] - h0[i - o];
        if (nr <= thr) {
            if (d0 > 0.0 || (d0 == 0.0 && t < i)) *dead = 1;
            continue;
        }
        for (int q = 0; q < k; q++) row[q] /= nr;
        C->rhs[nrows] = -d0 / nr;
        C->rowid[nrows] = first ? 2 * i + 1 : 2 * t;
        if (C->rq_ok) C->rq_ok[nrows] = 0;
        first = 0;
        nrows++;
    }
    return nrows;
}

/* the part of the cell (its first nrows path rows) where member i is its group's maximum: i's
 * rows are appended (group_rows) and the new row count returned; *t is the part's Chebyshev
 * radius from the ball (yc, r): INFINITY when the ball lies in every new row (no LP; *yout = yc,
 * *rout = r), -INFINITY when a constant comparison makes i lose, else the LP's value (centre
 * *yout, radius *rout) */
static int group_part(kc_ctx *C, int i, int nrows, const double *yc, double r, double *yout, double *rout,
                      double *t) {
    int k = C->k, dead = 0, nr2 = group_rows(C, i, nrows, &dead);
    if (dead) { *t = -INFINITY; return nr2; }
    double worst = -INFINITY;
    for (int q = nrows; q < nr2; q++) {
        double sd = dot(C->rows + (size_t)q * k, yc, k) - C->rhs[q];
        if (sd > worst) worst = sd;
    }
    if (worst <= -r) {
        *t = INFINITY;
        memcpy(yout, yc, sizeof(double) * k);
        *rout = r;
        return nr2;
    }
    *t = cheb(C, nr2 - 1, C->rows + (size_t)(nr2 - 1) * k, C->rhs[nr2 - 1], yc, yout, rout);
    return nr2;
}

/* the max groups of layer l that begin at or after index `start`: a member whose "I am the
 * maximum" part of the cell (the cell of the path rows, at the start of the layer) holds no ball
 * of radius > tol is excluded for the whole subtree (gpre 0), so that no node below tries it
 * again; every later cell is a part of this one.  Where one member is left and every other one's
 * part is empty beyond `drop` (or by a constant comparison), the cell lies where that member is
 * the maximum: it is selected with no rows (gpre 1), as screen() fixes a ReLU's bit.  Groups that
 * `start` cuts stay undecided. */
static void group_screen(kc_ctx *C, int l, int start, const double *yc, double r, int nrows) {
    int o = C->offsets[l], n = C->widths[l];
    double tol = C->tol;
    for (int j = start; j < n; j++) {
        int f = o + j;
        if (C->gfirst[f] != f) continue; /* not the first member of a group that begins here */
        int left = -1, n_left = 0, thin = 0;
        for (int i = f; i < C->gend[f]; i++) {
            double t, rr;
            group_part(C, i, nrows, yc, r, C->ya, &rr, &t);
            if (C->error) return;
            if (t > tol) { left = i; n_left++; continue; }
            if (t >= -C->drop) thin = 1;
            C->gpre[i] = 0;
            C->screened++;
        }
        if (n_left == 1 && !thin) C->gpre[left] = 1;
    }
}

/* the Chebyshev LP of side `side` of neuron (a, a0) in the cell (1: the active side a y + a0 >= 0,
 * row -a y <= a0; 0: the inactive side, row a y <= -a0); see cheb() */
static double side_lp(kc_ctx *C, int nrows, const double *a, double a0, int side, const double *ystart,
                      double *yout, double *rout) {
    if (!side) return cheb(C, nrows, a, -a0, ystart, yout, rout);
    double *rw = C->rowbuf;
    for (int q = 0; q < C->k; q++) rw[q] = -a[q];
    return cheb(C, nrows, rw, a0, ystart, yout, rout);
}

/* go down to side `bit` of neuron i with its row (a, a0) and the child's ball centre y; returns
 * the new row count */
static int descend(kc_ctx *C, int nrows, int i, int bit, const double *a, double a0, double *yc, const double *y) {
    C->bits[i] = (unsigned char)bit;
    nrows = add_row(C, nrows, i, bit, a, a0);
    memcpy(yc, y, sizeof(double) * C->k);
    return nrows;
}

int kc_start(kc_ctx *C, int depth, const unsigned char *bits, const double *yc, double r) {
    int k = C->k;
    C->nst = 0;
    C->ne = 0;
    C->error = 0;
    C->started = 0;
    if (depth < 0 || depth > C->N || (depth > 0 && !bits)) { C->error = KC_ERR_ARG; return -C->error; }
    for (int i = 0; i < depth; i++) C->bits[i] = (bits[i] || C->linear[i]) ? 1 : 0;
    layer0(C);
    if (C->rq_ok) memset(C->rq_ok, 0, (size_t)C->N + 1);
    int nrows = 0;
    for (int i = 0; i < depth; i++) {
        int l = C->layer_of[i], j = i - C->offsets[l];
        if (j == 0 && l > 0) transition(C, l);
        if (C->gfirst[i] >= 0) { /* the selected member of a max group carries its group's rows */
            int dead;
            if (C->bits[i]) nrows = group_rows(C, i, nrows, &dead);
            continue;
        }
        if (C->nrm[l][j] == 0.0) continue;
        nrows = add_row(C, nrows, i, C->bits[i], C->Hn[l] + (size_t)j * k, C->h0n[l][j]);
    }
    if (C->vr) {
        vr_clear_arena(C->vr);
        rebuild_vertices(C, nrows);
    }
    if (depth < C->N) {
        int l = C->layer_of[depth];
        if (depth > C->offsets[l] || depth == 0) screen_layer(C, l, depth - C->offsets[l], yc, r, nrows);
        /* else: the node completes layer l-1; kc_run makes the transition */
    }
    if (C->error) return -C->error;
    push_cur(C, depth, nrows, yc, r);
    C->started = 1;
    return 0;
}

int kc_run(kc_ctx *C, long long max_nodes) {
    int k = C->k, N = C->N;
    double tol = C->tol, drop = C->drop;
    double *yc = C->yc, *ya = C->ya, *yi = C->yi;
    C->ne = 0;
    long long done = 0;
    if (C->error) return -C->error;
    if (!C->started) { C->error = KC_ERR_STATE; return -C->error; }
    if (max_nodes > C->emax) max_nodes = C->emax;
    while (C->nst > 0) {
        if (done >= max_nodes) return 1;
        int s = --C->nst;
        Entry e = C->st[s];
        int depth = e.depth, nrows = e.nrows;
        double r = e.r;
        memcpy(yc, C->st_y + (size_t)s * k, sizeof(double) * k);
        if (e.has_row) {
            memcpy(C->rows + (size_t)(nrows - 1) * k, C->st_row + (size_t)s * (k + 1), sizeof(double) * k);
            C->rhs[nrows - 1] = C->st_row[(size_t)s * (k + 1) + k];
            C->rowid[nrows - 1] = e.row_id;
            if (C->rq_ok) C->rq_ok[nrows - 1] = 0;
        }
        if (depth > 0) C->bits[depth - 1] = e.bit;
        if (C->vr) vr_pop(C->vr, e.voff, e.vn);
        for (;;) {
            if (done >= max_nodes) {
                push_cur(C, depth, nrows, yc, r);
                return 1;
            }
            done++;
            C->nodes++;
            int i = depth;
            if (i > 0 && C->bnd[i]) { /* the node completes layer lb-1 */
                int lb = C->bnd[i];
                C->layer_counts[lb - 1]++;
                if (i == N) {
                    int q = C->ne++;
                    memcpy(C->ebits + (size_t)q * N, C->bits, N);
                    memcpy(C->ey + (size_t)q * k, yc, sizeof(double) * k);
                    C->er[q] = r;
                    for (int l = 1; l < C->L; l++) C->erank[(size_t)q * C->L + l - 1] = C->rank[l];
                    C->erank[(size_t)q * C->L + C->L - 1] = final_rank(C);
                    C->regions++;
                    break;
                }
                transition(C, lb);
                screen_layer(C, lb, 0, yc, r, nrows);
                if (C->error) return -C->error;
            }
            if (C->gfirst[i] >= 0) { /* a max-group member: is it the group's maximum? */
                int taken = 0;
                for (int t = C->gfirst[i]; t < i; t++)
                    if (C->bits[t]) { taken = 1; break; }
                if (taken) { C->bits[i] = 0; depth++; continue; } /* an earlier member was selected */
                int can_skip = 0; /* a later member that can still be the maximum */
                for (int t = i + 1; t < C->gend[i]; t++)
                    if (C->gpre[t] != 0) { can_skip = 1; break; }
                if (C->gpre[i] == 1) { /* the maximum everywhere in this cell (group_screen) */
                    C->bits[i] = 1;
                    depth++;
                    continue;
                }
                if (C->gpre[i] == 0) { /* never the maximum in this cell (group_screen) */
                    if (!can_skip) break;
                    C->bits[i] = 0;
                    depth++;
                    continue;
                }
                double rs = 0.0, ts;
                int nr2 = group_part(C, i, nrows, yc, r, ya, &rs, &ts);
                if (C->error) return -C->error;
                int have_s = ts > tol;
                if (have_s && can_skip) /* the cell where a later member is the maximum: same ball */
                    push(C, i + 1, nrows, 0, 0, 0, yc, r, NULL, 0.0, 0, -1);
                if (have_s) {
                    C->bits[i] = 1;
                    nrows = nr2;
                    memcpy(yc, ya, sizeof(double) * k);
                    r = rs;
                    depth++;
                    continue;
                }
                if (!can_skip) break; /* no member left that can be the maximum */
                C->bits[i] = 0;
                depth++;
                continue;
            }
            int l = C->layer_of[i], j = i - C->offsets[l];
            const double *a = C->Hn[l] + (size_t)j * k;
            double a0 = C->h0n[l][j];
            signed char pr = C->pre[l][j];
            if (pr >= 0) { /* bit fixed for the subtree (constant neuron or screened) */
                int bit = pr & 1;
                C->bits[i] = (unsigned char)bit;
                if (pr >= 2) nrows = add_row(C, nrows, i, bit, a, a0);
                depth++;
                continue;
            }
            /* signed distance of the centre (positive: active side) */
            double sd = dot(a, yc, k) + a0;
            int have_a = 0, have_i = 0;
            double ra = 0, ri = 0;
            if (sd >= r) { have_a = 1; memcpy(ya, yc, sizeof(double) * k); ra = r; }
            else if (sd <= -r) { have_i = 1; memcpy(yi, yc, sizeof(double) * k); ri = r; }
            else { /* the hyperplane cuts the ball: both caps hold a ball */
                double ra_ = (r + sd) / 2.0, ri_ = (r - sd) / 2.0;
                if (ra_ > tol) {
                    have_a = 1; ra = ra_;
                    double f = (r - sd) / 2.0;
                    for (int q = 0; q < k; q++) ya[q] = yc[q] + a[q] * f;
                }
                if (ri_ > tol) {
                    have_i = 1; ri = ri_;
                    double f = (r + sd) / 2.0;
                    for (int q = 0; q < k; q++) yi[q] = yc[q] - a[q] * f;
                }
                if (have_a && have_i) C->cert_both++;
            }
            if (C->vr && vr_valid(C->vr)) {
                /* the cell's vertex set decides; LPs only for a side with no ball at hand */
                VRep *V = C->vr;
                double smin, smax;
                int cls = vr_eval(V, a, a0, KC_VREP_EPS, &smin, &smax);
                if (cls == VR_NEG || cls == VR_POS) { /* the cell lies on one side: no row */
                    C->vdec++;
                    C->bits[i] = (unsigned char)cls;
                    depth++;
                    continue;
                }
                if (cls == VR_MIXED && vr_split(V, 2 * k + i, KC_VREP_RHO) == 0) {
                    C->vdec++;
                    double tb = tol + C->band;
                    if (!have_a && smax + KC_VREP_EPS > tol) { /* else no ball of radius > tol */
                        vr_side_point(V, 1, ya);
                        double rad = side_ball(C, nrows, ya, a, a0, 1);
                        if (rad > tb) { have_a = 1; ra = rad; C->vwit++; }
                        else {
                            double rr, t = side_lp(C, nrows, a, a0, 1, yc, ya, &rr);
                            if (C->error) return -C->error;
                            if (t > tol) { have_a = 1; ra = rr; }
                        }
                    }
                    if (!have_i && -smin + KC_VREP_EPS > tol) {
                        vr_side_point(V, 0, yi);
                        double rad = side_ball(C, nrows, yi, a, a0, 0);
                        if (rad > tb) { have_i = 1; ri = rad; C->vwit++; }
                        else {
                            double rr, t = side_lp(C, nrows, a, a0, 0, yc, yi, &rr);
                            if (C->error) return -C->error;
                            if (t > tol) { have_i = 1; ri = rr; }
                        }
                    }
                    /* a kept side is a true cut of the cell: its row is always added */
                    if (have_a && have_i) {
                        size_t off = 0;
                        int vn = vr_push_side(V, 0, &off);
                        push(C, i + 1, nrows + 1, 1, 2 * i, 0, yi, ri, a, -a0, off, vn);
                    } else if (!have_a && !have_i) {
                        break; /* neither side holds a ball of radius > tol */
                    }
                    int bit = have_a; /* continue with the active child when it exists */
                    vr_keep_side(V, bit);
                    nrows = descend(C, nrows, i, bit, a, a0, yc, bit ? ya : yi);
                    r = bit ? ra : ri;
                    depth++;
                    continue;
                }
                vr_invalidate(V); /* near a vertex, or a flat crossing: the LPs take the subtree */
                C->vlost++;
            }
            int keep_a = 1, keep_i = 1;
            if (!have_a) { /* active side {a y + a0 >= 0}: row -a y <= a0 */
                double bound = box_max(C, a, a0, 1.0);
                if (bound <= tol) keep_i = bound >= -drop;
                else {
                    double rr, t = side_lp(C, nrows, a, a0, 1, yc, ya, &rr);
                    if (C->error) return -C->error;
                    if (t > tol) { have_a = 1; ra = rr; }
                    else keep_i = t >= -drop;
                }
            }
            if (!have_i) { /* inactive side {a y + a0 <= 0}: row a y <= -a0 */
                double bound = box_max(C, a, a0, -1.0);
                if (bound <= tol) keep_a = bound >= -drop;
                else {
                    double rr, t = side_lp(C, nrows, a, a0, 0, yc, yi, &rr);
                    if (C->error) return -C->error;
                    if (t > tol) { have_i = 1; ri = rr; }
                    else keep_a = t >= -drop;
                }
            }
            if (have_a && have_i) {
                push(C, i + 1, keep_i ? nrows + 1 : nrows, keep_i, 2 * i, 0, yi, ri, a, -a0, 0, -1);
            } else if (have_i) { /* continue with the inactive child */
                C->bits[i] = 0;
                if (keep_i) nrows = add_row(C, nrows, i, 0, a, a0);
                memcpy(yc, yi, sizeof(double) * k);
                r = ri;
                depth++;
                continue;
            } else if (!have_a) {
                break; /* numerically empty cell (cannot happen with a valid ball; kept safe) */
            }
            C->bits[i] = 1; /* continue with the active child */
            if (keep_a) nrows = add_row(C, nrows, i, 1, a, a0);
            memcpy(yc, ya, sizeof(double) * k);
            r = ra;
            depth++;
        }
    }
    return 0;
}

int kc_pending(const kc_ctx *C) { return C->nst; }

int kc_frontier(kc_ctx *C, int *depths, unsigned char *bits, double *ys, double *rs) {
    int k = C->k, N = C->N, n = C->nst;
    for (int s = 0; s < n; s++) {
        Entry *e = C->st + s;
        depths[s] = e->depth;
        unsigned char *bb = bits + (size_t)s * N;
        memset(bb, 0, N);
        if (e->depth > 0) {
            memcpy(bb, C->bits, e->depth - 1);
            bb[e->depth - 1] = e->bit;
        }
        memcpy(ys + (size_t)s * k, C->st_y + (size_t)s * k, sizeof(double) * k);
        rs[s] = e->r;
    }
    C->nst = 0;
    if (C->vr) vr_clear_arena(C->vr);
    return n;
}

int kc_nemit(const kc_ctx *C) { return C->ne; }
const unsigned char *kc_emit_bits(const kc_ctx *C) { return C->ebits; }
const double *kc_emit_y(const kc_ctx *C) { return C->ey; }
const double *kc_emit_r(const kc_ctx *C) { return C->er; }
const int *kc_emit_rank(const kc_ctx *C) { return C->erank; }

void kc_stats(const kc_ctx *C, long long *out) {
    out[KC_ST_NODES] = C->nodes; out[KC_ST_LPS] = C->lps; out[KC_ST_REGIONS] = C->regions;
    out[KC_ST_CERT_BOTH] = C->cert_both; out[KC_ST_SCREENED] = C->screened;
    out[KC_ST_FALLBACKS] = C->fallbacks; out[KC_ST_LP_ITERS] = C->lp_iters; out[KC_ST_LP_FAIL] = C->lp_fail;
    out[KC_ST_VDEC] = C->vdec; out[KC_ST_VWIT] = C->vwit; out[KC_ST_VLOST] = C->vlost;
    out[KC_ST_SUBLP] = C->sub_dec;
    for (int l = 0; l < C->L; l++) out[KC_NSTATS + l] = C->layer_counts[l];
}

double kc_lp(kc_ctx *C, int nrows, const int *ids, const double *A, const double *c, const double *a, double c0,
             const double *ystart, double *yout) {
    C->error = 0;
    C->started = 0; /* the path buffers are overwritten: a running search cannot go on */
    C->nst = 0;
    if (nrows < 0 || nrows > C->N) { C->error = KC_ERR_ARG; return -INFINITY; }
    memcpy(C->rows, A, sizeof(double) * (size_t)nrows * C->k);
    memcpy(C->rhs, c, sizeof(double) * (size_t)nrows);
    memcpy(C->rowid, ids, sizeof(int) * (size_t)nrows);
    double rr;
    return cheb(C, nrows, a, c0, ystart, yout, &rr);
}
