/* The interface of the search kernel (enum_kernel.c).
 *
 * Included by the kernel itself and by its Python binding (pymodule.c), so the compiler checks
 * every prototype against its definition.  Plain C99, no Python, no MPI.
 *
 * Life cycle: kc_new (copies everything it is given) -> any number of
 *   kc_start(item) ; kc_run(chunk) ... (regions in the emit buffer after each kc_run) ;
 *   kc_frontier when kc_run stopped early
 * -> kc_free.  One context is single-threaded.
 *
 * LPs: for k <= cfg.dense_max_k the kernel first tries its own dense active-set LP and keeps
 * the answer only when it is certified (see decisions.h, BAND_*); every other LP goes to the
 * caller's lp_fn (the binding: HiGHS through Python).  lp_fn gets the path rows with their
 * ids: the row of neuron i on side b (0 inactive, 1 active) has id 2*i+b, and rows are in path
 * order, so a solver can keep the common prefix of consecutive calls (warm start).
 */
#ifndef MPI_ENUM_ENGINE_KERNEL_H_
#define MPI_ENUM_ENGINE_KERNEL_H_

#include "decisions.h"

#define KC_VERSION 8
#define KC_EMIT_MAX_DEFAULT 4096 /* nodes per kc_run chunk (a node emits at most one region) */

typedef struct kc_ctx kc_ctx; /* opaque */

/* error codes: kc_new's *err, kc_error(), and (negated) the return values of kc_start/kc_run */
enum {
    KC_OK = 0,
    KC_ERR_NOMEM = 1,    /* an allocation failed (kc_new: nothing is leaked) */
    KC_ERR_ARG = 2,      /* invalid configuration or arguments */
    KC_ERR_LP_FN = 3,    /* lp_fn returned non-zero (the binding has a Python exception set) */
    KC_ERR_NO_LP_FN = 4, /* an LP needed lp_fn and there is none */
    KC_ERR_STATE = 5     /* kc_run without a successful kc_start */
};

/* Solve max t s.t. G y + t <= h, A y + t <= c (nrows rows of length k, ids[i] the id of row i),
 * a . y + t <= c0, t <= cap.  Write t and the centre y (k values).  Return 0, or non-zero on
 * failure (the kernel stops with KC_ERR_LP_FN and calls nothing more). */
typedef int (*kc_lp_fn)(void *user, int nrows, const int *ids, const double *A, const double *c,
                        const double *a, double c0, double *t_out, double *y_out);

typedef struct {
    int k;                /* input dimension (the domain's coordinates y) */
    int L;                /* hidden layers */
    const int *widths;    /* L */
    const double *W;      /* hidden weights, layer after layer, each (width, in) row-major; layer 0 in y */
    const double *b;      /* hidden biases, concatenated */
    const double *wscale; /* L: max |W_l| (scale-free constant-neuron and rank tests) */
    const double *slope;  /* N (or NULL: all ReLU): each neuron's output factor on its inactive side
                           * (0 ReLU, alpha LeakyReLU/PReLU) */
    const unsigned char *linear; /* N (or NULL): 1 = a linear neuron (output = pre-activation): no
                           * hyperplane, its bit is always 1 and adds no row */
    const int *group;     /* N (or NULL): max-group id of each neuron (-1: none).  A group's members
                           * (contiguous, in one layer) are the inputs of one max unit: its bits are
                           * one-hot (1 = the selected maximum, output = its pre-activation; the others
                           * output 0), and the group splits a cell into one cell per member that can
                           * be the maximum (rows z_t - z_i <= 0 for the selected i) */
    int mG;               /* domain rows G y <= h (unit-norm rows) */
    const double *G, *h;
    int bounded;          /* 1: ylo/yhi is a bounding box of the domain (else unbounded) */
    const double *ylo, *yhi;
    double tol;           /* a side exists iff it holds a ball of radius > tol */
    double band_rel;      /* certification band = band_rel * tol + KC_BAND_ABS (normally KC_BAND_REL) */
    int dense_max_k;      /* dense LP only for k <= this (normally KC_DENSE_LP_MAX_K) */
    int emax;             /* emit buffer size = most nodes per kc_run */
    int vrep_max_k;       /* keep cells' vertex sets on box domains with k <= this (normally KC_VREP_MAX_K) */
    kc_lp_fn lp_fn;
    void *lp_user;
} kc_config;

/* kc_stats layout: KC_NSTATS counters, then L layer counts */
enum { KC_ST_NODES, KC_ST_LPS, KC_ST_REGIONS, KC_ST_CERT_BOTH, KC_ST_SCREENED, KC_ST_FALLBACKS,
       KC_ST_LP_ITERS, KC_ST_LP_FAIL,
       KC_ST_VDEC,  /* hyperplanes decided from a vertex set (no LP) */
       KC_ST_VWIT,  /* sides certified by a ball at a point built from the vertices */
       KC_ST_VLOST, /* cells whose subtree went back to the LPs (a vertex too near a hyperplane) */
       KC_ST_SUBLP, /* LPs decided by the subspace LP (no box LP) */
       KC_NSTATS };

int kc_version(void);
kc_ctx *kc_new(const kc_config *cfg, int *err);
void kc_free(kc_ctx *C);
int kc_n_neurons(const kc_ctx *C);
int kc_error(const kc_ctx *C);
/* which LP decides first: the dense LP (k <= dense_max_k, unless the box LP replaces it), the box
 * LP (box domains with k > BOXLP_MIN_K or k > dense_max_k), or only the callback (HiGHS) */
enum { KC_LP_CALLBACK = 0, KC_LP_DENSE = 1, KC_LP_BOX = 2 };
int kc_lp_kind(const kc_ctx *C);
/* 1 if the cells' vertex sets decide first (vrep.c: box domains with k <= cfg.vrep_max_k) */
int kc_vertex_sets(const kc_ctx *C);

/* make the work item (depth decided bits, certified ball yc, r) the only pending node;
 * returns 0 or -error */
int kc_start(kc_ctx *C, int depth, const unsigned char *bits, const double *yc, double r);
/* run at most max_nodes (<= emax) nodes: 0 subtree finished, 1 nodes remain, < 0 -error */
int kc_run(kc_ctx *C, long long max_nodes);

/* the regions of the last kc_run: n = kc_nemit; bits n*N (0/1), y n*k, r n, ranks n*L */
int kc_nemit(const kc_ctx *C);
const unsigned char *kc_emit_bits(const kc_ctx *C);
const double *kc_emit_y(const kc_ctx *C);
const double *kc_emit_r(const kc_ctx *C);
const int *kc_emit_rank(const kc_ctx *C);

/* pending nodes after kc_run returned 1, bottom of the stack (shallowest) first: depth, bits
 * (N per node, the first depth meaningful), y (k per node), r.  Empties the stack. */
int kc_pending(const kc_ctx *C);
int kc_frontier(kc_ctx *C, int *depths, unsigned char *bits, double *ys, double *rs);

void kc_stats(const kc_ctx *C, long long *out); /* KC_NSTATS + L values */

/* one Chebyshev LP as the search would solve it (for tests): path rows A (nrows x k, rhs c,
 * ids) plus (a, c0), dense LP started at ystart.  Returns t; the centre in yout; on failure
 * kc_error(C) != 0. */
double kc_lp(kc_ctx *C, int nrows, const int *ids, const double *A, const double *c, const double *a,
             double c0, const double *ystart, double *yout);

#endif /* MPI_ENUM_ENGINE_KERNEL_H_ */
