/* mpi_enum fast exact kernel: the depth-first search of mpi_enum.engine in C.
 *
 * Same algorithm and decisions as the reference LP engine (mpi_enum/engine.py, kernel="lp"):
 * layer-major depth-first over the hidden neurons, ball certificates, a bounding-box test,
 * per-layer screening, and Chebyshev LPs.  The LPs are solved by a small dense primal
 * active-set method (x = (y, t) with k+1 <= ~32 variables) started from the node's ball
 * centre.  Every LP answer is certified: LB = the exact inscribed radius at the returned
 * centre (a feasible ball), UB = the dual bound of the final working set.  Only when
 * LB > tol + band (keep) or UB < tol - band (reject) is the answer used; anything else
 * (including any numerical failure) calls back to Python, which solves the LP with HiGHS,
 * the reference path.
 *
 * No MPI, no Python API: plain C99 loaded with ctypes.  Build:
 *     cc -O2 -fPIC -shared -o _enum_kernel.so enum_kernel.c -lm
 * (mpi_enum/kernel_c.py does this on first import if the library is missing or stale.)
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KC_VERSION 3

typedef double (*lp_cb_t)(int nrows, const double *A, const double *c, const double *a, double c0,
                          double *y_out);

typedef struct {
    int depth, nrows, has_row;
    unsigned char bit;
    double r;
} Entry;

typedef struct {
    int k, L, N;
    int *widths, *offsets, *layer_of, *bnd;
    double **W, **b, *wscale;
    int mG;
    double *G, *h;
    int bounded;
    double *ylo, *yhi;
    double tol, cap, drop, band;
    /* layer slots */
    double **H, **h0, **Hn, **h0n, **nrm, *mscale;
    signed char **pre;
    int *rank;
    /* path */
    unsigned char *bits;
    double *rows, *rhs;
    /* stack */
    Entry *st;
    double *st_y, *st_row;
    int nst, st_cap;
    /* LP workspace */
    double *lpA, *lpb, *Q, *R, *x, *p, *v, *lam, *Qc, *slk;
    int *Wset;
    unsigned char *inW;
    /* scratch */
    double *ya, *yi, *yl, *yc, *Mbuf, *mbuf, *jac;
    /* emit buffer */
    int emax, ne;
    unsigned char *ebits;
    double *ey, *er;
    int *erank;
    /* stats */
    long long nodes, lps, regions, cert_both, screened, fallbacks, lp_iters, lp_fail;
    long long *layer_counts;
    lp_cb_t cb;
    int error;
} Ctx;

static void *xcalloc(size_t n, size_t s) { return calloc(n ? n : 1, s ? s : 1); }

static inline double dot(const double *a, const double *b, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ------------------------------------------------------------------ dense LP (active set) */

/* Modified Gram-Schmidt (twice) of rows A[W[0..w-1]] (skipping position `skip`) into Q
 * (rows, length n) and upper-triangular R (n x n, row-major).  Returns the number of basis
 * vectors, or -1 if a row is numerically dependent. */
static int mgs(const double *A, int n, const int *W, int w, int skip, double *Q, double *R, double *v) {
    int q = 0;
    for (int c = 0; c < w; c++) {
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
        if (!(nv > 1e-11)) return -1;
        R[q * n + q] = nv;
        for (int e = 0; e < n; e++) Q[q * n + e] = v[e] / nv;
        q++;
    }
    return q;
}

/* maximise x[n-1] subject to A x <= b (every row has coefficient 1 on x[n-1]; the last row is
 * the cap row).  x holds the start y (first n-1 entries); on success x is the solution and
 * *LB (exact radius at the returned y) and *UB (dual bound) are set.  Returns 0 or -1. */
static int lp_active(Ctx *C, int m, int n, double *LB, double *UB) {
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
    x[nn] = t;
    W[w++] = arg;
    inW[arg] = 1;
    int maxit = 60 + 6 * m, degen = 0;
    for (int it = 0; it < maxit; it++) {
        C->lp_iters++;
        int q = mgs(A, n, W, w, -1, Q, R, v);
        if (q < 0) return -1;
        for (int i = 0; i < w; i++) Qc[i] = Q[i * n + nn];
        for (int e = 0; e < n; e++) p[e] = 0.0;
        p[nn] = 1.0;
        for (int i = 0; i < w; i++)
            for (int e = 0; e < n; e++) p[e] -= Qc[i] * Q[i * n + e];
        double np = sqrt(dot(p, p, n));
        int drop = -1;
        if (np > 1e-10 && w < n) {
            for (int e = 0; e < n; e++) p[e] /= np;
        } else {
            /* multipliers: R lam = Qc (upper triangular) */
            for (int i = w - 1; i >= 0; i--) {
                double s = Qc[i];
                for (int j = i + 1; j < w; j++) s -= R[i * n + j] * lam[j];
                lam[i] = s / R[i * n + i];
            }
            int bland = degen > 2 * n + 4;
            double best = -1e-12;
            int bidx = 1 << 30;
            for (int i = 0; i < w; i++) {
                if (lam[i] < -1e-12) {
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
                return 0;
            }
            int qq = mgs(A, n, W, w, drop, Q, R, v);
            if (qq < 0) return -1;
            const double *aq = A + (size_t)W[drop] * n;
            memcpy(v, aq, sizeof(double) * n);
            for (int pass = 0; pass < 2; pass++)
                for (int i = 0; i < qq; i++) {
                    double d = dot(Q + i * n, v, n);
                    for (int e = 0; e < n; e++) v[e] -= d * Q[i * n + e];
                }
            double nv = sqrt(dot(v, v, n));
            if (!(nv > 1e-11)) return -1;
            for (int e = 0; e < n; e++) p[e] = -v[e] / nv;
        }
        /* ratio test (ties: smallest index) */
        double amin = INFINITY;
        int enter = -1;
        for (int i = 0; i < m; i++) {
            if (inW[i]) continue;
            const double *a = A + (size_t)i * n;
            double ap = dot(a, p, n);
            if (ap > 1e-9) {
                double s = b[i] - dot(a, x, n);
                if (s < 0) s = 0;
                double al = s / ap;
                if (al < amin) { amin = al; enter = i; }
            }
        }
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

/* Chebyshev LP of the cell (nrows path rows + domain rows) plus the extra row (a, c0),
 * started at ystart.  Returns the t to compare with tol (and -drop), and the centre in yout. */
static double cheb(Ctx *C, int nrows, const double *a, double c0, const double *ystart, double *yout) {
    int k = C->k, n = k + 1;
    int m = C->mG + nrows + 2;
    double *A = C->lpA, *b = C->lpb;
    int r = 0;
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
    r++;
    C->lps++;
    memcpy(C->x, ystart, sizeof(double) * k);
    double LB, UB;
    if (lp_active(C, m, n, &LB, &UB) == 0) {
        if (LB > C->tol + C->band) {
            memcpy(yout, C->x, sizeof(double) * k);
            return LB;
        }
        if (UB < C->tol - C->band) {
            memcpy(yout, C->x, sizeof(double) * k);
            return UB;
        }
    } else {
        C->lp_fail++;
    }
    /* unsure: the reference LP (HiGHS) through Python */
    C->fallbacks++;
    if (!C->cb) { C->error = 2; return -INFINITY; }
    double t = C->cb(nrows, C->rows, C->rhs, a, c0, yout);
    if (t != t) { C->error = 1; return -INFINITY; }
    return t;
}

static inline double box_max(const Ctx *C, const double *a, double a0, double sgn) {
    if (!C->bounded) return INFINITY;
    double s = sgn * a0;
    for (int e = 0; e < C->k; e++) {
        double u = sgn * a[e] * C->ylo[e], w = sgn * a[e] * C->yhi[e];
        s += u > w ? u : w;
    }
    return s;
}

/* ------------------------------------------------------------------ layers */

/* singular-value rank of M (rows x cols), numpy-style threshold; mscale as in engine._rank */
static int rank_of(Ctx *C, const double *M, int rows, int cols, double mscale) {
    /* one-sided Jacobi on the columns of the smaller side */
    int nc, len;
    double *J = C->jac;
    if (cols <= rows) {
        nc = cols; len = rows;
        for (int c = 0; c < nc; c++)
            for (int i = 0; i < len; i++) J[c * len + i] = M[i * cols + c];
    } else {
        nc = rows; len = cols;
        memcpy(J, M, sizeof(double) * rows * cols);
    }
    if (nc == 0) return 0;
    for (int sweep = 0; sweep < 80; sweep++) {
        int rot = 0;
        for (int p = 0; p < nc - 1; p++)
            for (int q = p + 1; q < nc; q++) {
                double *u = J + p * len, *w = J + q * len;
                double al = dot(u, u, len), be = dot(w, w, len), ga = dot(u, w, len);
                if (fabs(ga) <= 1e-15 * sqrt(al * be) || ga == 0.0) continue;
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
    double s0 = 0.0;
    for (int c = 0; c < nc; c++) {
        double s = sqrt(dot(J + c * len, J + c * len, len));
        C->v[c] = s;  /* scratch (nc <= k+1 <= size of v? use lam as fallback) */
        if (s > s0) s0 = s;
    }
    if (!(s0 > 1e-12 * mscale)) return 0;
    double thr = 1e-10 * (s0 > 1e-300 ? s0 : 1e-300);
    int r = 0;
    for (int c = 0; c < nc; c++)
        if (C->v[c] > thr) r++;
    return r;
}

static void finish_layer(Ctx *C, int l, double Mmax) {
    int k = C->k, n = C->widths[l];
    double ms = C->wscale[l] * Mmax + 1e-300;
    C->mscale[l] = ms;
    double *H = C->H[l], *h0 = C->h0[l];
    for (int j = 0; j < n; j++) {
        double nr = sqrt(dot(H + j * k, H + j * k, k));
        int cst = nr <= 1e-13 * ms;
        C->nrm[l][j] = cst ? 0.0 : nr;
        double safe = cst ? 1.0 : nr;
        for (int e = 0; e < k; e++) C->Hn[l][j * k + e] = H[j * k + e] / safe;
        C->h0n[l][j] = h0[j] / safe;
        C->pre[l][j] = cst ? (signed char)(h0[j] > 0) : (signed char)-1;
    }
}

static void layer0(Ctx *C) {
    int k = C->k, n = C->widths[0];
    memcpy(C->H[0], C->W[0], sizeof(double) * n * k);
    memcpy(C->h0[0], C->b[0], sizeof(double) * n);
    finish_layer(C, 0, 1.0);
}

/* enter layer l (>= 1) from slot l-1 and the bits of layer l-1 */
static void transition(Ctx *C, int l) {
    int k = C->k, np = C->widths[l - 1], n = C->widths[l];
    const unsigned char *mask = C->bits + C->offsets[l - 1];
    const double *Hp = C->H[l - 1], *hp = C->h0[l - 1], *Wl = C->W[l], *bl = C->b[l];
    double *M = C->Mbuf;
    int na = 0;
    double Mmax = 0.0;
    for (int i = 0; i < np; i++)
        if (mask[i]) {
            for (int e = 0; e < k; e++) {
                double z = Hp[i * k + e];
                M[na * k + e] = z;
                if (fabs(z) > Mmax) Mmax = fabs(z);
            }
            na++;
        }
    C->rank[l] = rank_of(C, M, na, k, C->mscale[l - 1]);
    double *H = C->H[l], *h0 = C->h0[l];
    for (int j = 0; j < n; j++) {
        double *hr = H + j * k;
        for (int e = 0; e < k; e++) hr[e] = 0.0;
        double s = 0.0;
        const double *wr = Wl + (size_t)j * np;
        for (int i = 0; i < np; i++)
            if (mask[i]) {
                double wv = wr[i];
                const double *hpr = Hp + i * k;
                for (int e = 0; e < k; e++) hr[e] += wv * hpr[e];
                s += wv * hp[i];
            }
        h0[j] = s + bl[j];
    }
    finish_layer(C, l, Mmax);
}

static int final_rank(Ctx *C) {
    int l = C->L - 1, k = C->k, n = C->widths[l];
    const unsigned char *mask = C->bits + C->offsets[l];
    double *M = C->Mbuf;
    int na = 0;
    for (int i = 0; i < n; i++)
        if (mask[i]) { memcpy(M + na * k, C->H[l] + i * k, sizeof(double) * k); na++; }
    return rank_of(C, M, na, k, C->mscale[l]);
}

static void screen(Ctx *C, int l, int start, const double *yc, double r, int nrows) {
    int k = C->k, n = C->widths[l];
    double tol = C->tol;
    signed char *pre = C->pre[l];
    for (int j = start; j < n; j++) {
        if (pre[j] != -1) continue;
        const double *a = C->Hn[l] + j * k;
        double a0 = C->h0n[l][j];
        double s = dot(a, yc, k) + a0;
        if (fabs(s) < r) continue;
        int bit = s > 0;
        double bound, rhs;
        double *row = C->yl; /* reuse as row buffer below */
        double rowb[64];
        double *rw = k <= 64 ? rowb : row;
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
        double t = cheb(C, nrows, rw, rhs, yc, C->ya);
        if (C->error) return;
        if (t <= tol) {
            pre[j] = (signed char)(t < -C->drop ? bit : bit + 2);
            C->screened++;
        }
    }
}

/* ------------------------------------------------------------------ context */

void kc_free(Ctx *C) {
    if (!C) return;
    for (int l = 0; l < C->L; l++) {
        free(C->W[l]); free(C->b[l]); free(C->H[l]); free(C->h0[l]); free(C->Hn[l]);
        free(C->h0n[l]); free(C->nrm[l]); free(C->pre[l]);
    }
    free(C->W); free(C->b); free(C->H); free(C->h0); free(C->Hn); free(C->h0n); free(C->nrm); free(C->pre);
    free(C->widths); free(C->offsets); free(C->layer_of); free(C->bnd); free(C->wscale);
    free(C->G); free(C->h); free(C->ylo); free(C->yhi); free(C->mscale); free(C->rank);
    free(C->bits); free(C->rows); free(C->rhs); free(C->st); free(C->st_y); free(C->st_row);
    free(C->lpA); free(C->lpb); free(C->Q); free(C->R); free(C->x); free(C->p); free(C->v);
    free(C->lam); free(C->Qc); free(C->slk); free(C->Wset); free(C->inW);
    free(C->ya); free(C->yi); free(C->yl); free(C->yc); free(C->Mbuf); free(C->mbuf); free(C->jac);
    free(C->ebits); free(C->ey); free(C->er); free(C->erank); free(C->layer_counts);
    free(C);
}

int kc_version(void) { return KC_VERSION; }

/* W: all hidden weight matrices concatenated (layer 0 already in y coordinates), row-major */
Ctx *kc_new(int k, int L, const int *widths, const double *Wflat, const double *bflat, const double *wscale,
            int mG, const double *G, const double *h, int bounded, const double *ylo, const double *yhi,
            double tol, double cap, double drop, double band, int emax, lp_cb_t cb) {
    Ctx *C = (Ctx *)xcalloc(1, sizeof(Ctx));
    C->k = k; C->L = L; C->tol = tol; C->cap = cap; C->drop = drop; C->band = band; C->cb = cb;
    C->widths = (int *)xcalloc(L, sizeof(int));
    C->offsets = (int *)xcalloc(L + 1, sizeof(int));
    memcpy(C->widths, widths, sizeof(int) * L);
    int N = 0, wmax = k;
    for (int l = 0; l < L; l++) { C->offsets[l] = N; N += widths[l]; if (widths[l] > wmax) wmax = widths[l]; }
    C->offsets[L] = N;
    C->N = N;
    C->layer_of = (int *)xcalloc(N + 1, sizeof(int));
    C->bnd = (int *)xcalloc(N + 1, sizeof(int));
    for (int l = 0; l < L; l++)
        for (int i = C->offsets[l]; i < C->offsets[l + 1]; i++) C->layer_of[i] = l;
    for (int l = 1; l <= L; l++) C->bnd[C->offsets[l]] = l;
    C->W = (double **)xcalloc(L, sizeof(double *));
    C->b = (double **)xcalloc(L, sizeof(double *));
    C->H = (double **)xcalloc(L, sizeof(double *));
    C->h0 = (double **)xcalloc(L, sizeof(double *));
    C->Hn = (double **)xcalloc(L, sizeof(double *));
    C->h0n = (double **)xcalloc(L, sizeof(double *));
    C->nrm = (double **)xcalloc(L, sizeof(double *));
    C->pre = (signed char **)xcalloc(L, sizeof(signed char *));
    size_t wo = 0, bo = 0;
    for (int l = 0; l < L; l++) {
        int in = l ? widths[l - 1] : k, n = widths[l];
        C->W[l] = (double *)xcalloc((size_t)n * in, sizeof(double));
        memcpy(C->W[l], Wflat + wo, sizeof(double) * n * in);
        wo += (size_t)n * in;
        C->b[l] = (double *)xcalloc(n, sizeof(double));
        memcpy(C->b[l], bflat + bo, sizeof(double) * n);
        bo += n;
        C->H[l] = (double *)xcalloc((size_t)n * k, sizeof(double));
        C->h0[l] = (double *)xcalloc(n, sizeof(double));
        C->Hn[l] = (double *)xcalloc((size_t)n * k, sizeof(double));
        C->h0n[l] = (double *)xcalloc(n, sizeof(double));
        C->nrm[l] = (double *)xcalloc(n, sizeof(double));
        C->pre[l] = (signed char *)xcalloc(n, 1);
    }
    C->wscale = (double *)xcalloc(L, sizeof(double));
    memcpy(C->wscale, wscale, sizeof(double) * L);
    C->mG = mG;
    C->G = (double *)xcalloc((size_t)mG * k, sizeof(double));
    C->h = (double *)xcalloc(mG, sizeof(double));
    if (mG) { memcpy(C->G, G, sizeof(double) * mG * k); memcpy(C->h, h, sizeof(double) * mG); }
    C->bounded = bounded;
    C->ylo = (double *)xcalloc(k, sizeof(double));
    C->yhi = (double *)xcalloc(k, sizeof(double));
    if (bounded) { memcpy(C->ylo, ylo, sizeof(double) * k); memcpy(C->yhi, yhi, sizeof(double) * k); }
    C->mscale = (double *)xcalloc(L, sizeof(double));
    C->rank = (int *)xcalloc(L + 1, sizeof(int));
    C->bits = (unsigned char *)xcalloc(N + 1, 1);
    C->rows = (double *)xcalloc((size_t)(N + 1) * k, sizeof(double));
    C->rhs = (double *)xcalloc(N + 1, sizeof(double));
    C->st_cap = 2 * N + 8;
    C->st = (Entry *)xcalloc(C->st_cap, sizeof(Entry));
    C->st_y = (double *)xcalloc((size_t)C->st_cap * k, sizeof(double));
    C->st_row = (double *)xcalloc((size_t)C->st_cap * (k + 1), sizeof(double));
    int n = k + 1, m = mG + N + 4;
    C->lpA = (double *)xcalloc((size_t)m * n, sizeof(double));
    C->lpb = (double *)xcalloc(m, sizeof(double));
    C->slk = (double *)xcalloc(m, sizeof(double));
    C->inW = (unsigned char *)xcalloc(m, 1);
    C->Q = (double *)xcalloc((size_t)n * n, sizeof(double));
    C->R = (double *)xcalloc((size_t)n * n, sizeof(double));
    int vs = n > wmax ? n : wmax;
    C->x = (double *)xcalloc(n, sizeof(double));
    C->p = (double *)xcalloc(n, sizeof(double));
    C->v = (double *)xcalloc(vs + 1, sizeof(double));
    C->lam = (double *)xcalloc(n, sizeof(double));
    C->Qc = (double *)xcalloc(n, sizeof(double));
    C->Wset = (int *)xcalloc(n + 1, sizeof(int));
    C->ya = (double *)xcalloc(k, sizeof(double));
    C->yi = (double *)xcalloc(k, sizeof(double));
    C->yl = (double *)xcalloc(k, sizeof(double));
    C->yc = (double *)xcalloc(k, sizeof(double));
    C->Mbuf = (double *)xcalloc((size_t)wmax * k, sizeof(double));
    C->mbuf = (double *)xcalloc(wmax, sizeof(double));
    C->jac = (double *)xcalloc((size_t)wmax * k, sizeof(double));
    C->emax = emax;
    C->ebits = (unsigned char *)xcalloc((size_t)emax * N, 1);
    C->ey = (double *)xcalloc((size_t)emax * k, sizeof(double));
    C->er = (double *)xcalloc(emax, sizeof(double));
    C->erank = (int *)xcalloc((size_t)emax * L, sizeof(int));
    C->layer_counts = (long long *)xcalloc(L, sizeof(long long));
    return C;
}

static void push(Ctx *C, int depth, int nrows, int has_row, unsigned char bit, const double *y, double r,
                 const double *row, double rhs) {
    int k = C->k, s = C->nst++;
    Entry *e = C->st + s;
    e->depth = depth; e->nrows = nrows; e->has_row = has_row; e->bit = bit; e->r = r;
    memcpy(C->st_y + (size_t)s * k, y, sizeof(double) * k);
    if (has_row) {
        memcpy(C->st_row + (size_t)s * (k + 1), row, sizeof(double) * k);
        C->st_row[(size_t)s * (k + 1) + k] = rhs;
    }
}

/* rebuild the cell of a work item and make it the only pending node; returns C->error */
int kc_start(Ctx *C, int depth, const unsigned char *bits, const double *yc, double r) {
    int k = C->k;
    C->nst = 0;
    C->error = 0;
    memcpy(C->bits, bits, depth);
    layer0(C);
    int nrows = 0;
    for (int i = 0; i < depth; i++) {
        int l = C->layer_of[i], j = i - C->offsets[l];
        if (j == 0 && l > 0) transition(C, l);
        if (C->nrm[l][j] == 0.0) continue;
        const double *a = C->Hn[l] + j * k;
        double a0 = C->h0n[l][j];
        if (bits[i]) {
            for (int e = 0; e < k; e++) C->rows[nrows * k + e] = -a[e];
            C->rhs[nrows] = a0;
        } else {
            memcpy(C->rows + nrows * k, a, sizeof(double) * k);
            C->rhs[nrows] = -a0;
        }
        nrows++;
    }
    if (depth < C->N) {
        int l = C->layer_of[depth];
        if (depth > C->offsets[l] || depth == 0) screen(C, l, depth - C->offsets[l], yc, r, nrows);
    }
    push(C, depth, nrows, 0, depth ? bits[depth - 1] : 0, yc, r, NULL, 0.0);
    return C->error;
}

/* Run up to max_nodes nodes.  Returns 0 when the subtree is finished, 1 when nodes remain
 * (all pending nodes are on the stack), < 0 on error.  Regions found go to the emit buffer
 * (C->ne of them; max_nodes must not exceed emax). */
int kc_run(Ctx *C, long long max_nodes) {
    int k = C->k, N = C->N;
    double tol = C->tol, drop = C->drop;
    double *yc = C->yc, *ya = C->ya, *yi = C->yi, *yl = C->yl;
    C->ne = 0;
    long long done = 0;
    if (C->error) return -C->error;
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
        }
        if (depth > 0) C->bits[depth - 1] = e.bit;
        for (;;) {
            if (done >= max_nodes) {
                push(C, depth, nrows, 0, depth ? C->bits[depth - 1] : 0, yc, r, NULL, 0.0);
                return 1;
            }
            done++;
            C->nodes++;
            int i = depth;
            if (i > 0 && C->bnd[i]) {
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
                screen(C, lb, 0, yc, r, nrows);
                if (C->error) return -C->error;
            }
            int l = C->layer_of[i], j = i - C->offsets[l];
            const double *a = C->Hn[l] + j * k;
            double a0 = C->h0n[l][j];
            signed char pr = C->pre[l][j];
            if (pr >= 0) {
                int bit = pr & 1;
                C->bits[i] = (unsigned char)bit;
                if (pr >= 2) {
                    double *row = C->rows + (size_t)nrows * k;
                    if (bit) { for (int q = 0; q < k; q++) row[q] = -a[q]; C->rhs[nrows] = a0; }
                    else { memcpy(row, a, sizeof(double) * k); C->rhs[nrows] = -a0; }
                    nrows++;
                }
                depth++;
                continue;
            }
            double sd = dot(a, yc, k) + a0;
            int have_a = 0, have_i = 0;
            double ra = 0, ri = 0;
            if (sd >= r) { have_a = 1; memcpy(ya, yc, sizeof(double) * k); ra = r; }
            else if (sd <= -r) { have_i = 1; memcpy(yi, yc, sizeof(double) * k); ri = r; }
            else {
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
            int keep_a = 1, keep_i = 1;
            if (!have_a) {
                double bound = box_max(C, a, a0, 1.0);
                if (bound <= tol) keep_i = bound >= -drop;
                else {
                    double rowb[64], *rw = k <= 64 ? rowb : yl;
                    for (int q = 0; q < k; q++) rw[q] = -a[q];
                    double t = cheb(C, nrows, rw, a0, yc, ya);
                    if (C->error) return -C->error;
                    if (t > tol) { have_a = 1; ra = t; }
                    else keep_i = t >= -drop;
                }
            }
            if (!have_i) {
                double bound = box_max(C, a, a0, -1.0);
                if (bound <= tol) keep_a = bound >= -drop;
                else {
                    double t = cheb(C, nrows, a, -a0, yc, yi);
                    if (C->error) return -C->error;
                    if (t > tol) { have_i = 1; ri = t; }
                    else keep_a = t >= -drop;
                }
            }
            if (have_a && have_i) {
                push(C, i + 1, keep_i ? nrows + 1 : nrows, keep_i, 0, yi, ri, a, -a0);
            } else if (have_i) {
                /* continue with the inactive child */
                C->bits[i] = 0;
                if (keep_i) {
                    memcpy(C->rows + (size_t)nrows * k, a, sizeof(double) * k);
                    C->rhs[nrows] = -a0;
                    nrows++;
                }
                memcpy(yc, yi, sizeof(double) * k);
                r = ri;
                depth++;
                continue;
            } else if (!have_a) {
                break; /* numerically empty cell */
            }
            C->bits[i] = 1;
            if (keep_a) {
                double *row = C->rows + (size_t)nrows * k;
                for (int q = 0; q < k; q++) row[q] = -a[q];
                C->rhs[nrows] = a0;
                nrows++;
            }
            memcpy(yc, ya, sizeof(double) * k);
            r = ra;
            depth++;
        }
    }
    return 0;
}

/* pending nodes (bottom of the stack first); fills depth, bits (N per node), y (k per node), r */
int kc_frontier(Ctx *C, int *depths, unsigned char *bits, double *ys, double *rs) {
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
    return n;
}

int kc_pending(Ctx *C) { return C->nst; }
int kc_nemit(Ctx *C) { return C->ne; }
unsigned char *kc_ebits(Ctx *C) { return C->ebits; }
double *kc_ey(Ctx *C) { return C->ey; }
double *kc_er(Ctx *C) { return C->er; }
int *kc_erank(Ctx *C) { return C->erank; }

void kc_stats(Ctx *C, long long *out) {
    out[0] = C->nodes; out[1] = C->lps; out[2] = C->regions; out[3] = C->cert_both;
    out[4] = C->screened; out[5] = C->fallbacks; out[6] = C->lp_iters; out[7] = C->lp_fail;
    for (int l = 0; l < C->L; l++) out[8 + l] = C->layer_counts[l];
}

/* one Chebyshev LP for tests: the cell rows A (nrows x k, rhs c) plus (a, c0), start ystart.
 * Returns t as the engine would use it; yout: the centre. */
double kc_lp(Ctx *C, int nrows, const double *A, const double *c, const double *a, double c0,
             const double *ystart, double *yout) {
    memcpy(C->rows, A, sizeof(double) * nrows * C->k);
    memcpy(C->rhs, c, sizeof(double) * nrows);
    C->error = 0;
    return cheb(C, nrows, a, c0, ystart, yout);
}
