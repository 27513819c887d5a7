/* boxlp: bounded-variable dual simplex for Chebyshev LPs of a cell inside a box (see boxlp.h).
 *
 * Standard form (minimisation of -s):
 *     rows i (slots):  a_i . y + s + w_i = c_i,     w_i >= 0
 *     columns:         y_e in [l_e, u_e] (e < k),  s free,  w_i in [0, inf)
 * and one row 0 . y + s + w = cap (id CAP_ID) in every LP.  s is free and basic from the cold
 * start on, so it never leaves the basis and the duals never vanish (no all-zero reduced costs).
 * Variable j: j < k is y_j, j == k is s, j == k + 1 + i is the slack of slot i.
 * The basis inverse Binv is explicit (ms x ms, row = basis position, column = slot): one
 * iteration costs O(ms * k) for the pivot row plus O(ms^2) for the update, and ms is the number
 * of cell rows (a few dozen), whatever k is.  Leaving row: dual steepest edge (exact weights,
 * O(ms^2)); entering column: the bound-flipping ratio test (boxed y flip instead of entering).
 * Warm starts: the bases of recent solves are kept (keyed by the hashes of their rows); a solve
 * starts from the largest saved basis whose rows are all asked for, adding the others with
 * their slacks basic, which keeps it dual feasible.
 */
#include "boxlp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "decisions.h"

#define BLP_FTOL KC_BOXLP_FTOL
#define BLP_DTOL KC_BOXLP_DTOL
#define BLP_PIVTOL KC_BOXLP_PIVTOL
#define BLP_REFACTOR KC_BOXLP_REFACTOR
#define CAP_ID (-1LL - 0x7fffffffffffffffLL) /* id of the row s <= cap, kept in every LP */

enum { AT_LOWER = 0, AT_UPPER = 1, BASIC = 2 };

struct Cand { double t, a; int j; };

/* a dual feasible basis of an earlier solve: its rows (keys, in slot order), basis and inverse */
struct Saved {
    int ms;                  /* 0: empty */
    long long stamp;
    long long *id;           /* mmax */
    unsigned long long *h;   /* mmax: hash of (row, rhs) */
    int *head;               /* mmax */
    signed char *stat;       /* nv */
    double *Binv;            /* mmax * mmax */
};

struct BoxLP {
    int k, mmax, ms, nv, since_refactor;
    double cap, big;
    double *l, *u;          /* the LP's bounds: the box shrunk by `shrink` */
    double *lf, *uf;        /* the full box */
    double *A, *c;          /* slot rows (mmax x k) and right-hand sides */
    long long *id;
    int *head, *pos;        /* basis position -> variable; variable -> position or -1 */
    signed char *stat;
    double *x, *d;          /* values and reduced costs of all variables */
    double *Binv, *B;       /* ms x ms (leading dimension mmax) */
    double *rho, *g, *colq, *tmp, *ybuf;
    struct Cand *cand;
    long long n_solves, n_pivots, n_cold, n_refactor;
    double keep_above, reject_below; /* early stop: a certificate already decides */
    int early;
    /* bases of earlier solves, to warm-start from the largest one whose rows are all asked for */
    int nb;
    struct Saved *saved;
    unsigned long long *rh;  /* hashes of the asked rows */
    long long stamp;
};

static void *xcalloc(size_t n, size_t s) { return calloc(n ? n : 1, s ? s : 1); }

void blp_free(BoxLP *P) {
    if (!P) return;
    free(P->l); free(P->u); free(P->lf); free(P->uf); free(P->A); free(P->c); free(P->id); free(P->head);
    free(P->pos); free(P->stat); free(P->x); free(P->d); free(P->Binv); free(P->B); free(P->rho);
    free(P->g); free(P->ybuf); free(P->colq); free(P->tmp); free(P->cand);
    free(P);
}

BoxLP *blp_new(int k, int mmax, const double *lo, const double *hi, double shrink, double cap) {
    BoxLP *P = (BoxLP *)xcalloc(1, sizeof(BoxLP));
    if (!P) return NULL;
    mmax += 1; /* the cap row */
    P->k = k; P->mmax = mmax; P->cap = cap; P->nv = k + 1 + mmax;
    size_t mm = (size_t)mmax * mmax;
    int ok = (P->l = xcalloc(k, sizeof(double))) && (P->u = xcalloc(k, sizeof(double)))
        && (P->lf = xcalloc(k, sizeof(double))) && (P->uf = xcalloc(k, sizeof(double)))
        && (P->A = xcalloc((size_t)mmax * k, sizeof(double))) && (P->c = xcalloc(mmax, sizeof(double)))
        && (P->id = xcalloc(mmax, sizeof(long long)))
        && (P->head = xcalloc(mmax, sizeof(int))) && (P->pos = xcalloc(P->nv, sizeof(int)))
        && (P->stat = xcalloc(P->nv, 1)) && (P->x = xcalloc(P->nv, sizeof(double)))
        && (P->d = xcalloc(P->nv, sizeof(double))) && (P->Binv = xcalloc(mm, sizeof(double)))
        && (P->B = xcalloc(mm, sizeof(double))) && (P->rho = xcalloc(mmax, sizeof(double)))
        && (P->g = xcalloc(k, sizeof(double))) && (P->ybuf = xcalloc(k, sizeof(double))) && (P->colq = xcalloc(mmax, sizeof(double)))
        && (P->tmp = xcalloc(mmax > k ? mmax : k, sizeof(double))) && (P->cand = xcalloc(P->nv, sizeof(struct Cand)));
    if (ok) {
        P->nb = 2 * mmax + 8;
        ok = (P->saved = xcalloc(P->nb, sizeof(struct Saved))) && (P->rh = xcalloc(mmax, sizeof(unsigned long long)));
        for (int b = 0; ok && b < P->nb; b++) {
            struct Saved *S = P->saved + b;
            ok = (S->id = xcalloc(mmax, sizeof(long long))) && (S->h = xcalloc(mmax, sizeof(unsigned long long)))
                && (S->head = xcalloc(mmax, sizeof(int))) && (S->stat = xcalloc(P->nv, 1))
                && (S->Binv = xcalloc(mm, sizeof(double)));
        }
    }
    if (!ok) { blp_free(P); return NULL; }
    double span = cap > 0 ? cap : -cap;
    for (int e = 0; e < k; e++) {
        if (!(hi[e] - lo[e] > 2.0 * shrink)) { blp_free(P); return NULL; } /* no ball of radius shrink fits */
        P->lf[e] = lo[e]; P->uf[e] = hi[e];
        P->l[e] = lo[e] + shrink; P->u[e] = hi[e] - shrink;
        span += fmax(fabs(lo[e]), fabs(hi[e]));
    }
    P->big = 10.0 * span + 1.0; /* a row with this right-hand side never binds on the box */
    return P;
}

void blp_reset(BoxLP *P) {
    P->ms = 0;
    for (int b = 0; b < P->nb; b++) P->saved[b].ms = 0;
}

void blp_counters(const BoxLP *P, long long out[4]) {
    out[0] = P->n_solves; out[1] = P->n_pivots; out[2] = P->n_cold; out[3] = P->n_refactor;
}

static inline double lo_of(const BoxLP *P, int j) { return j < P->k ? P->l[j] : (j == P->k ? -INFINITY : 0.0); }
static inline double hi_of(const BoxLP *P, int j) { return j < P->k ? P->u[j] : INFINITY; }

/* the order of the ratio test's breakpoints: by t, ties by column */
static inline int cand_less(const struct Cand *x, const struct Cand *y) {
    return x->t < y->t || (x->t == y->t && x->j < y->j);
}

static inline void cand_swap(struct Cand *x, struct Cand *y) { struct Cand t = *x; *x = *y; *y = t; }

/* what passing breakpoint c costs the leaving row's infeasibility: |alpha| times the range
 * of its column (infinite for a column without an upper bound: it must enter) */
static inline double cand_weight(const BoxLP *P, const struct Cand *c) {
    return fabs(c->a) * (hi_of(P, c->j) - lo_of(P, c->j));
}

/* The long-step ratio test's walk: in increasing order of t, breakpoints are passed while the
 * remaining infeasibility `slope` stays > 0 after subtracting their weight; the first that
 * would take it to <= 0 (or has infinite weight) enters.  Found by a weighted quickselect in
 * O(nc) expected (the walk may pass hundreds of boxed columns at large k): cand is reordered
 * so that cand[0, stop) are the passed ones, cand[stop] the entering one.  Returns stop (the
 * last candidate if every one is passed). */
static int bfrt_stop(const BoxLP *P, struct Cand *c, int nc, double slope) {
    int lo = 0, hi = nc;  /* c[0, lo) passed (their weight subtracted); the stop lies in [lo, hi) */
    while (hi - lo > 16) {
        int mid = lo + (hi - lo) / 2;  /* median of three as the pivot, moved to hi - 1 */
        if (cand_less(c + mid, c + lo)) cand_swap(c + mid, c + lo);
        if (cand_less(c + hi - 1, c + lo)) cand_swap(c + hi - 1, c + lo);
        if (cand_less(c + mid, c + hi - 1)) cand_swap(c + mid, c + hi - 1);
        int m = lo;
        double w = 0.0;
        for (int t = lo; t < hi - 1; t++)
            if (cand_less(c + t, c + hi - 1)) {
                w += cand_weight(P, c + t);
                cand_swap(c + m, c + t);
                m++;
            }
        cand_swap(c + m, c + hi - 1);  /* the pivot at m: c[lo, m) below it, c(m, hi) above */
        if (!(w < slope)) { hi = m; continue; }
        slope -= w;
        double wp = cand_weight(P, c + m);
        if (!isfinite(wp) || slope - wp <= 0.0) return m;
        slope -= wp;
        lo = m + 1;
    }
    for (int t = lo + 1; t < hi; t++)  /* a few left: sort them and walk */
        for (int u = t; u > lo && cand_less(c + u, c + u - 1); u--) cand_swap(c + u, c + u - 1);
    for (int t = lo; t < hi; t++) {
        double w = cand_weight(P, c + t);
        if (!isfinite(w) || slope - w <= 0.0) return t;
        slope -= w;
    }
    return hi > lo ? hi - 1 : (lo < nc ? lo : nc - 1);
}

/* coefficient of variable j in slot row i */
static inline double coef(const BoxLP *P, int j, int i) {
    if (j < P->k) return P->A[(size_t)i * P->k + j];
    if (j == P->k) return 1.0;
    return (j - P->k - 1) == i ? 1.0 : 0.0;
}

static void cold_start(BoxLP *P, const double *yhint) {
    int k = P->k;
    P->ms = 0;
    for (int e = 0; e < k; e++) {
        double mid = 0.5 * (P->l[e] + P->u[e]);
        P->stat[e] = (yhint && yhint[e] > mid) ? AT_UPPER : AT_LOWER;
        P->pos[e] = -1;
        P->d[e] = 0.0;
    }
    P->stat[k] = AT_LOWER; P->pos[k] = -1; P->d[k] = 0.0; /* made basic once the rows are in */
    for (int j = k + 1; j < P->nv; j++) { P->stat[j] = AT_LOWER; P->pos[j] = -1; P->d[j] = 0.0; }
    P->n_cold++;
    P->since_refactor = 0;
}

/* append a row with its slack basic; Binv grows by one row and column */
static void add_row(BoxLP *P, const double *a, double c, long long id) {
    int k = P->k, i = P->ms, L = P->mmax;
    memcpy(P->A + (size_t)i * k, a, sizeof(double) * k);
    P->c[i] = c; P->id[i] = id;
    double *nr = P->Binv + (size_t)i * L;
    for (int q = 0; q <= i; q++) nr[q] = 0.0;
    for (int r = 0; r < i; r++) {
        double cr = coef(P, P->head[r], i);
        P->Binv[(size_t)r * L + i] = 0.0;
        if (cr != 0.0) {
            const double *br = P->Binv + (size_t)r * L;
            for (int q = 0; q < i; q++) nr[q] -= cr * br[q];
        }
    }
    nr[i] = 1.0;
    int v = k + 1 + i;
    P->head[i] = v; P->pos[v] = i; P->stat[v] = BASIC; P->d[v] = 0.0;
    P->ms++;
}

static void swap_d(double *a, double *b) { double t = *a; *a = *b; *b = t; }

/* basic values from the nonbasic ones, and reduced costs from the basis: O(ms k + ms^2) */
static void recompute(BoxLP *P) {
    int k = P->k, ms = P->ms, L = P->mmax;
    double *rhs = P->tmp;
    for (int j = 0; j < k + 1 + ms; j++)
        if (P->stat[j] != BASIC) P->x[j] = P->stat[j] == AT_UPPER ? hi_of(P, j) : lo_of(P, j);
    double xs = P->stat[k] == BASIC ? 0.0 : P->x[k];
    for (int i = 0; i < ms; i++) {
        const double *a = P->A + (size_t)i * k;
        double s = P->c[i] - xs;
        for (int e = 0; e < k; e++)
            if (P->stat[e] != BASIC) s -= a[e] * P->x[e];
        rhs[i] = s; /* nonbasic slacks are at 0 */
    }
    for (int r = 0; r < ms; r++) {
        const double *br = P->Binv + (size_t)r * L;
        double s = 0.0;
        for (int i = 0; i < ms; i++) s += br[i] * rhs[i];
        P->x[P->head[r]] = s;
    }
    /* pi = c_B^T Binv: only s has a cost (-1) */
    double *pi = P->rho;
    int ps = P->pos[k];
    for (int i = 0; i < ms; i++) pi[i] = ps >= 0 ? -P->Binv[(size_t)ps * L + i] : 0.0;
    double *g = P->g;
    for (int e = 0; e < k; e++) g[e] = 0.0;
    double sp = 0.0;
    for (int i = 0; i < ms; i++) {
        if (pi[i] == 0.0) continue;
        const double *a = P->A + (size_t)i * k;
        for (int e = 0; e < k; e++) g[e] += pi[i] * a[e];
        sp += pi[i];
    }
    for (int e = 0; e < k; e++) P->d[e] = P->stat[e] == BASIC ? 0.0 : -g[e];
    P->d[k] = P->stat[k] == BASIC ? 0.0 : -1.0 - sp;
    for (int i = 0; i < ms; i++) { int v = k + 1 + i; P->d[v] = P->stat[v] == BASIC ? 0.0 : -pi[i]; }
}

/* Binv = B^{-1} by Gauss-Jordan with partial pivoting; -1 if B is numerically singular */
static int refactor(BoxLP *P) {
    int ms = P->ms, L = P->mmax;
    double *B = P->B, *Bi = P->Binv;
    for (int i = 0; i < ms; i++)
        for (int r = 0; r < ms; r++) B[(size_t)i * L + r] = coef(P, P->head[r], i);
    /* invert B (rows = slots, columns = positions): B^{-1} has rows = positions, columns = slots */
    for (int i = 0; i < ms; i++)
        for (int q = 0; q < ms; q++) Bi[(size_t)i * L + q] = i == q ? 1.0 : 0.0;
    for (int col = 0; col < ms; col++) {
        int piv = col;
        double best = fabs(B[(size_t)col * L + col]);
        for (int i = col + 1; i < ms; i++) {
            double v = fabs(B[(size_t)i * L + col]);
            if (v > best) { best = v; piv = i; }
        }
        if (!(best > 1e-12)) return -1;
        if (piv != col)
            for (int q = 0; q < ms; q++) {
                swap_d(B + (size_t)piv * L + q, B + (size_t)col * L + q);
                swap_d(Bi + (size_t)piv * L + q, Bi + (size_t)col * L + q);
            }
        double inv = 1.0 / B[(size_t)col * L + col];
        for (int q = 0; q < ms; q++) { B[(size_t)col * L + q] *= inv; Bi[(size_t)col * L + q] *= inv; }
        for (int i = 0; i < ms; i++) {
            if (i == col) continue;
            double f = B[(size_t)i * L + col];
            if (f == 0.0) continue;
            for (int q = 0; q < ms; q++) {
                B[(size_t)i * L + q] -= f * B[(size_t)col * L + q];
                Bi[(size_t)i * L + q] -= f * Bi[(size_t)col * L + q];
            }
        }
    }
    /* Gauss-Jordan on B (slot x position) gives the inverse with rows = positions */
    P->n_refactor++;
    P->since_refactor = 0;
    return 0;
}

/* make the reduced costs dual feasible by bound flips (boxed y only); -1 if impossible */
static int dual_repair(BoxLP *P) {
    int k = P->k;
    int flipped = 0;
    for (int e = 0; e < k; e++) {
        if (P->stat[e] == AT_LOWER && P->d[e] < -BLP_DTOL) { P->stat[e] = AT_UPPER; flipped = 1; }
        else if (P->stat[e] == AT_UPPER && P->d[e] > BLP_DTOL) { P->stat[e] = AT_LOWER; flipped = 1; }
    }
    if (P->stat[k] != BASIC) return -1;
    for (int i = 0; i < P->ms; i++) {
        int v = k + 1 + i;
        if (P->stat[v] == AT_LOWER && P->d[v] < -1e-9) return -1;
    }
    return flipped;
}

static void certify(BoxLP *P, double *y_out, double *LB, double *UB, double *UBfull);

/* Would certify (O(ms k)) decide at this iterate?  The same two bounds from the basis in
 * O(ms (1 + v)), v = the basic y out of their bounds: the dual objective of this dual feasible
 * basis is the basic s (what UB computes, up to rounding); the margin of slot i at the basic
 * solution is s + w_i (w_i its slack, 0 when nonbasic), and clipping y into its bounds moves it
 * by -a_ie (clip_e - y_e) for each clipped coordinate e.  Only a filter: certify decides, from
 * the returned data alone. */
static int early_due(BoxLP *P) {
    int k = P->k, ms = P->ms;
    double s = P->x[k], slack = 1e-9 * (1.0 + fabs(s));
    if (s < P->reject_below + slack) return 1;
    double *m = P->colq; /* scratch (ms); iterate recomputes colq after the check */
    for (int i = 0; i < ms; i++) {
        int w = k + 1 + i;
        m[i] = s + (P->stat[w] == BASIC ? P->x[w] : 0.0);
    }
    for (int p = 0; p < ms; p++) {
        int e = P->head[p];
        if (e >= k) continue;
        double v = P->x[e], cl = v < P->l[e] ? P->l[e] : (v > P->u[e] ? P->u[e] : v);
        if (cl == v) continue;
        for (int i = 0; i < ms; i++) m[i] -= P->A[(size_t)i * k + e] * (cl - v);
    }
    double lb = P->cap;
    for (int i = 0; i < ms; i++)
        if (m[i] < lb) lb = m[i];
    return lb > P->keep_above - slack;
}

/* the dual simplex iterations; 0 optimal (or decided early), -1 failure */
static int iterate(BoxLP *P) {
    int k = P->k, L = P->mmax;
    int maxit = 40 + 12 * P->ms;
    for (int it = 0; it < maxit; it++) {
        int ms = P->ms;
        /* leaving row: the most infeasible basic variable */
        int r = -1;
        double worst = BLP_FTOL, bound = 0.0;
        int sr = 0;
        double best_score = 0.0;
        for (int p = 0; p < ms; p++) {
            int j = P->head[p];
            double v = P->x[j], lo = lo_of(P, j), hi = hi_of(P, j);
            double scale = 1.0 + fabs(v), inf = 0.0;
            int side = 0;
            if (v < lo - BLP_FTOL * scale) { inf = lo - v; side = -1; }
            else if (v > hi + BLP_FTOL * scale) { inf = v - hi; side = 1; }
            if (!side) continue;
            /* dual steepest edge: infeasibility^2 over the squared norm of the row of Binv (exact: ms^2) */
            const double *bp = P->Binv + (size_t)p * L;
            double w = 0.0;
            for (int i = 0; i < ms; i++) w += bp[i] * bp[i];
            double score = inf * inf / (w > 1e-300 ? w : 1e-300);
            if (score > best_score) { best_score = score; worst = inf; r = p; sr = side; bound = side > 0 ? hi : lo; }
        }
        if (r < 0) return 0;
        if (P->early && it % 2 == 1 && early_due(P)) {  /* every dual iterate gives an upper bound, every clipped primal a lower bound */
            double lb, ub, ubf;
            certify(P, P->ybuf, &lb, &ub, &ubf);
            if (ub < P->reject_below || lb > P->keep_above) return 0;
        }
        /* pivot row: rho = Binv[r, :], alpha_j = rho . column j */
        const double *rho = P->Binv + (size_t)r * L;
        double *g = P->g;
        for (int e = 0; e < k; e++) g[e] = 0.0;
        double as = 0.0;
        for (int i = 0; i < ms; i++) {
            double ri = rho[i];
            as += ri;
            if (ri == 0.0) continue;
            const double *a = P->A + (size_t)i * k;
            for (int e = 0; e < k; e++) g[e] += ri * a[e];
        }
        /* Ratio test with bound flipping (long step): walk the breakpoints d_j / alpha_j in
         * increasing order; a boxed candidate whose whole range the leaving row's infeasibility
         * can absorb flips to its other bound instead of entering the basis. */
        int nc = 0;
        for (int j = 0; j < k + 1 + ms; j++) {
            signed char st = P->stat[j];
            if (st == BASIC) continue;
            double a = j < k ? g[j] : (j == k ? as : rho[j - k - 1]);
            double sa = sr * a;
            if (st == AT_LOWER ? !(sa > BLP_PIVTOL) : !(sa < -BLP_PIVTOL)) continue;
            if (j < k && P->u[j] <= P->l[j]) continue; /* a fixed column never enters */
            struct Cand *cd = P->cand + nc++;
            cd->j = j; cd->a = a;
            cd->t = fabs(P->d[j]) / fabs(a);
        }
        if (nc == 0) return -1; /* dual unbounded: cannot happen (s is free below) */
        /* the walk over the breakpoints in increasing order (see bfrt_stop): cand[0, stop) are
         * passed (they flip), cand[stop] enters, the rest follow in no order */
        int stop = bfrt_stop(P, P->cand, nc, worst);
        /* among the breakpoints tied with the stop (within the dual tolerance), the largest pivot */
        int q = P->cand[stop].j;
        double qa = P->cand[stop].a, tq = P->cand[stop].t;
        int best = stop;
        for (int t = stop + 1; t < nc; t++)
            if (P->cand[t].t <= tq + BLP_DTOL / fabs(P->cand[t].a) && fabs(P->cand[t].a) > fabs(qa)) {
                best = t; qa = P->cand[t].a;
            }
        if (best != stop) {  /* the stop candidate is then neither flipped nor entering */
            struct Cand tmpc = P->cand[best];
            P->cand[best] = P->cand[stop];
            P->cand[stop] = tmpc;
            q = P->cand[stop].j;
        }
        /* flip the passed boxed candidates: x_B changes by -Binv * (sum of their columns * step) */
        if (stop > 0) {
            double *dr = P->tmp;
            for (int i = 0; i < ms; i++) dr[i] = 0.0;
            for (int t = 0; t < stop; t++) {
                int j = P->cand[t].j;
                double step = P->stat[j] == AT_LOWER ? hi_of(P, j) - lo_of(P, j) : lo_of(P, j) - hi_of(P, j);
                P->stat[j] = P->stat[j] == AT_LOWER ? AT_UPPER : AT_LOWER;
                P->x[j] = P->stat[j] == AT_UPPER ? hi_of(P, j) : lo_of(P, j);
                if (j < k) {
                    for (int i = 0; i < ms; i++) dr[i] -= P->A[(size_t)i * k + j] * step;
                } else if (j == k) {
                    for (int i = 0; i < ms; i++) dr[i] -= step;
                } else {
                    dr[j - k - 1] -= step;
                }
            }
            for (int p = 0; p < ms; p++) {
                const double *bp = P->Binv + (size_t)p * L;
                double sdx = 0.0;
                for (int i = 0; i < ms; i++) sdx += bp[i] * dr[i];
                P->x[P->head[p]] += sdx;
            }
        }
        /* entering column in the current basis */
        double *cq = P->colq;
        for (int p = 0; p < ms; p++) {
            const double *bp = P->Binv + (size_t)p * L;
            double s = 0.0;
            if (q < k) {
                for (int i = 0; i < ms; i++) s += bp[i] * P->A[(size_t)i * k + q];
            } else if (q == k) {
                for (int i = 0; i < ms; i++) s += bp[i];
            } else {
                s = bp[q - k - 1];
            }
            cq[p] = s;
        }
        double arq = cq[r];
        if (!(fabs(arq) > BLP_PIVTOL) || fabs(arq - qa) > 1e-7 * (1.0 + fabs(qa))) {
            /* the row and the column disagree: the inverse has drifted */
            if (P->since_refactor == 0 || refactor(P) < 0) return -1;
            recompute(P);
            if (dual_repair(P) < 0) return -1;
            recompute(P);
            continue;
        }
        int leave = P->head[r];
        double tp = (P->x[leave] - bound) / arq;
        for (int p = 0; p < ms; p++) P->x[P->head[p]] -= tp * cq[p];
        P->x[q] += tp;
        P->x[leave] = bound;
        double td = P->d[q] / arq;
        for (int j = 0; j < k + 1 + ms; j++) {
            if (P->stat[j] == BASIC) continue;
            double a = j < k ? g[j] : (j == k ? as : rho[j - k - 1]);
            P->d[j] -= td * a;
        }
        P->d[q] = 0.0;
        P->d[leave] = -td;
        /* basis and inverse */
        P->head[r] = q; P->pos[q] = r; P->stat[q] = BASIC;
        P->pos[leave] = -1; P->stat[leave] = sr > 0 ? AT_UPPER : AT_LOWER;
        double *br = P->Binv + (size_t)r * L;
        double inv = 1.0 / arq;
        for (int i = 0; i < ms; i++) br[i] *= inv;
        for (int p = 0; p < ms; p++) {
            if (p == r || cq[p] == 0.0) continue;
            double f = cq[p];
            double *bp = P->Binv + (size_t)p * L;
            for (int i = 0; i < ms; i++) bp[i] -= f * br[i];
        }
        P->n_pivots++;
        if (++P->since_refactor >= BLP_REFACTOR) {
            if (refactor(P) < 0) return -1;
            recompute(P);
            if (dual_repair(P) < 0) return -1;
            recompute(P);
        }
    }
    return -1;
}

/* LB and UB from the returned data alone (see boxlp.h) */
static void certify(BoxLP *P, double *y_out, double *LB, double *UB, double *UBfull) {
    int k = P->k, ms = P->ms, L = P->mmax;
    for (int e = 0; e < k; e++) {
        double v = P->x[e];
        y_out[e] = v < P->l[e] ? P->l[e] : (v > P->u[e] ? P->u[e] : v);
    }
    double lb = P->cap;
    for (int i = 0; i < ms; i++) {
        const double *a = P->A + (size_t)i * k;
        double s = P->c[i];
        for (int e = 0; e < k; e++) s -= a[e] * y_out[e];
        if (s < lb) lb = s;
    }
    *LB = lb; /* the cap row's margin is big: lb starts at cap */
    /* multipliers lambda_i = -pi_i >= 0 on the asked rows (any such lambda gives a bound) */
    double *lam = P->tmp;
    int ps = P->pos[k];
    double sl = 0.0;
    for (int i = 0; i < ms; i++) {
        double v = (ps >= 0 && P->id[i] != CAP_ID) ? P->Binv[(size_t)ps * L + i] : 0.0;
        lam[i] = v > 0 ? v : 0.0;
        sl += lam[i];
    }
    if (sl > 1.0)
        for (int i = 0; i < ms; i++) lam[i] /= sl;
    double *g = P->g;
    for (int e = 0; e < k; e++) g[e] = 0.0;
    double ub = 0.0, tot = 0.0;
    for (int i = 0; i < ms; i++) {
        if (lam[i] == 0.0) continue;
        const double *a = P->A + (size_t)i * k;
        for (int e = 0; e < k; e++) g[e] += lam[i] * a[e];
        ub += lam[i] * P->c[i];
        tot += lam[i];
    }
    /* max over the (shrunk, and the full) box of -g . y */
    double ubf = ub;
    for (int e = 0; e < k; e++) {
        ub += blp_fmax(-g[e] * P->l[e], -g[e] * P->u[e]);
        ubf += blp_fmax(-g[e] * P->lf[e], -g[e] * P->uf[e]);
    }
    double rest = P->big * (1.0 - tot > 0 ? 1.0 - tot : 0.0);
    *UB = ub + rest;
    *UBfull = ubf + rest;
}

void blp_set_early(BoxLP *P, double keep_above, double reject_below) {
    P->early = 1;
    P->keep_above = keep_above;
    P->reject_below = reject_below;
}

static unsigned long long row_hash(const double *a, int k, double c, long long id) {
    (void)id; /* a row is its content: the same constraint under another id is the same row */
    /* FNV-1a over 64-bit words (the bit patterns of the doubles), then a final mix */
    unsigned long long h = 1469598103934665603ULL, w;
    for (int e = 0; e < k; e++) {
        memcpy(&w, a + e, sizeof w);
        h = (h ^ w) * 1099511628211ULL;
    }
    memcpy(&w, &c, sizeof w);
    h = (h ^ w) * 1099511628211ULL;
    h ^= h >> 29; h *= 0xbf58476d1ce4e5b9ULL; h ^= h >> 32;
    return h;
}

static void save_basis(BoxLP *P) {
    struct Saved *S = NULL;
    for (int b = 0; b < P->nb; b++) {  /* the same row set replaces its entry, else the oldest goes */
        struct Saved *T = P->saved + b;
        if (T->ms == P->ms && memcmp(T->h, P->rh, sizeof(unsigned long long) * P->ms) == 0) { S = T; break; }
    }
    if (!S) {
        S = P->saved;
        for (int b = 1; b < P->nb; b++)
            if (P->saved[b].stamp < S->stamp) S = P->saved + b;
    }
    int ms = P->ms, L = P->mmax;
    S->ms = ms;
    S->stamp = ++P->stamp;
    memcpy(S->id, P->id, sizeof(long long) * ms);
    memcpy(S->h, P->rh, sizeof(unsigned long long) * ms);
    memcpy(S->head, P->head, sizeof(int) * ms);
    memcpy(S->stat, P->stat, (size_t)(P->k + 1 + ms));
    for (int r = 0; r < ms; r++) memcpy(S->Binv + (size_t)r * L, P->Binv + (size_t)r * L, sizeof(double) * ms);
}

/* the saved basis with the most rows, all of them among the asked rows (hashes hq of m rows,
 * the cap row first); NULL if none */
static struct Saved *find_basis(BoxLP *P, int m, const unsigned long long *hq) {
    struct Saved *best = NULL;
    for (int b = 0; b < P->nb; b++) {
        struct Saved *S = P->saved + b;
        if (S->ms == 0 || S->ms > m || (best && S->ms <= best->ms)) continue;
        /* every saved row matched to its own asked row (duplicate rows count as often as they occur) */
        unsigned char taken[m];
        memset(taken, 0, (size_t)m);
        int all = 1;
        for (int i = 0; i < S->ms && all; i++) {
            int f = 0;
            for (int t = 0; t < m; t++)
                if (!taken[t] && hq[t] == S->h[i]) { taken[t] = 1; f = 1; break; }
            all = f;
        }
        if (all) best = S;
    }
    return best;
}

int blp_solve(BoxLP *P, int m, const long long *ids, const double *A, const double *c, const double *yhint,
              double *y_out, double *LB, double *UB, double *UBfull) {
    int k = P->k, L = P->mmax;
    P->n_solves++;
    if (m > P->mmax - 1) return -1;
    /* the asked rows: the cap row (slot 0 of a cold start) and the m rows, with their hashes */
    unsigned long long *hq = P->rh; /* reused below as the current slots' hashes */
    double *zero = P->g;
    for (int e = 0; e < k; e++) zero[e] = 0.0;
    unsigned long long hcap = row_hash(zero, k, P->big, CAP_ID);
    unsigned long long hreq[P->mmax];
    hreq[0] = hcap;
    for (int t = 0; t < m; t++) hreq[t + 1] = row_hash(A + (size_t)t * k, k, c[t], ids[t]);
    for (int attempt = 0; attempt < 2; attempt++) {
        struct Saved *S = attempt ? NULL : find_basis(P, m + 1, hreq);
        int used[P->mmax];
        for (int t = 0; t <= m; t++) used[t] = 0;
        cold_start(P, yhint);
        if (S) {  /* restore: the saved rows in their slot order, then the others with basic slacks */
            P->n_cold--;
            for (int i = 0; i < S->ms; i++) {
                int t = 0;
                while (hreq[t] != S->h[i] || used[t]) t++;
                used[t] = 1;
                const double *a = t ? A + (size_t)(t - 1) * k : zero;
                memcpy(P->A + (size_t)i * k, a, sizeof(double) * k);
                P->c[i] = t ? c[t - 1] : P->big;
                P->id[i] = S->id[i];
                hq[i] = S->h[i];
            }
            P->ms = S->ms;
            memcpy(P->head, S->head, sizeof(int) * S->ms);
            memcpy(P->stat, S->stat, (size_t)(k + 1 + S->ms));
            for (int j = 0; j < k + 1 + S->ms; j++) P->pos[j] = -1;
            for (int r = 0; r < S->ms; r++) {
                P->pos[P->head[r]] = r;
                memcpy(P->Binv + (size_t)r * L, S->Binv + (size_t)r * L, sizeof(double) * S->ms);
            }
            recompute(P); /* primal values for the rows added next */
        }
        for (int t = 0; t <= m; t++) {
            if (used[t]) continue;
            int i = P->ms;
            add_row(P, t ? A + (size_t)(t - 1) * k : zero, t ? c[t - 1] : P->big, t ? ids[t - 1] : CAP_ID);
            hq[i] = hreq[t];
        }
        if (!S) {
            /* a dual feasible start that is not degenerate: s basic in the row of smallest margin at
             * the hint (the reduced costs then put every y at the box vertex best for that row) */
            int r0 = 0;
            double best = INFINITY;
            for (int i = 0; i < P->ms; i++) {
                const double *a = P->A + (size_t)i * k;
                double sm = P->c[i];
                for (int e = 0; e < k; e++) {
                    double ye = yhint ? yhint[e] : 0.5 * (P->l[e] + P->u[e]);
                    ye = ye < P->l[e] ? P->l[e] : (ye > P->u[e] ? P->u[e] : ye);
                    sm -= a[e] * ye;
                }
                if (sm < best) { best = sm; r0 = i; }
            }
            int w0 = k + 1 + r0, p0 = P->pos[w0];
            P->head[p0] = k; P->pos[k] = p0; P->stat[k] = BASIC;
            P->pos[w0] = -1; P->stat[w0] = AT_LOWER;
            if (refactor(P) < 0) continue;
        }
        recompute(P);
        int rep = dual_repair(P);
        if (rep < 0) continue;
        if (rep > 0) recompute(P);
        if (iterate(P) == 0) {
            certify(P, y_out, LB, UB, UBfull);
            save_basis(P);
            return 0;
        }
    }
    return -1;
}
