/* vrep: vertex sets of the search's low-dimensional cells (see vrep.h for what is kept exact
 * and when the module gives a cell back to the LPs). */
#include "vrep.h"

#include "decisions.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t h;
    int u, p; /* vertex (index into the smaller side) and the facet position it drops */
} Slot;

struct VRep {
    int k, cap;
    double *x[2]; /* cur and scratch: cap * k coordinates */
    unsigned char *f[2]; /* their incidence records, rb bytes each (see `mask`) */
    int n[2], cur;
    double *s;            /* vr_eval's values at cur's vertices */
    int *side[2], ns[2];  /* last split: cur's vertices with s < 0 (0) and s > 0 (1) */
    uint64_t *ms;         /* the smaller side's masks, gathered */
    double *nx;           /* last split's new vertices */
    double *nsum;         /* and the sum of their coordinates */
    unsigned char *nf;
    int nnew;
    /* incidence records: with at most 64 facet ids (mask = 1) a vertex's facets are one 64-bit
     * mask and two vertices share an edge iff their masks share k-1 bits (pairs are tested
     * directly); else a sorted list of k int ids, and edges are found by hashing */
    int mask;
    size_t rb;
    Slot *tab;
    int tabcap;
    uint64_t *fh; /* a random 64-bit hash of every facet id */
    int nfacets;
    double *ax; /* arena */
    unsigned char *af;
    size_t atop, acap, amax;
};

static uint64_t mix(uint64_t z) { /* splitmix64's finaliser: a facet id's hash */
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

VRep *vr_new(int k, int nfacets, int capacity, size_t arena_max) {
    if (k < 1 || capacity < 2 || nfacets < 2 * k) return NULL;
    VRep *V = (VRep *)calloc(1, sizeof(VRep));
    if (!V) return NULL;
    size_t K = (size_t)k, c = (size_t)capacity;
    V->k = k;
    V->cap = capacity;
    V->mask = nfacets <= 64;
    V->rb = V->mask ? sizeof(uint64_t) : sizeof(int) * K;
    V->amax = arena_max;
    int tc = 16;
    while ((size_t)tc < 2 * c * K) tc *= 2;
    V->tabcap = tc;
    int ok = 1;
    for (int q = 0; q < 2; q++) {
        ok &= (V->x[q] = (double *)malloc(sizeof(double) * c * K)) != NULL;
        ok &= (V->f[q] = (unsigned char *)malloc(V->rb * c)) != NULL;
        ok &= (V->side[q] = (int *)malloc(sizeof(int) * c)) != NULL;
    }
    ok &= (V->s = (double *)malloc(sizeof(double) * c)) != NULL;
    ok &= (V->ms = (uint64_t *)malloc(sizeof(uint64_t) * c)) != NULL;
    ok &= (V->nsum = (double *)malloc(sizeof(double) * K)) != NULL;
    ok &= (V->nx = (double *)malloc(sizeof(double) * c * K)) != NULL;
    ok &= (V->nf = (unsigned char *)malloc(V->rb * c)) != NULL;
    ok &= (V->tab = (Slot *)malloc(sizeof(Slot) * (size_t)tc)) != NULL;
    ok &= (V->fh = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)nfacets)) != NULL;
    if (!ok) { vr_free(V); return NULL; }
    V->nfacets = nfacets;
    for (int q = 0; q < nfacets; q++) V->fh[q] = mix((uint64_t)q);
    V->n[0] = V->n[1] = -1;
    return V;
}

void vr_free(VRep *V) {
    if (!V) return;
    for (int q = 0; q < 2; q++) { free(V->x[q]); free(V->f[q]); free(V->side[q]); }
    free(V->s); free(V->ms); free(V->nsum); free(V->nx); free(V->nf); free(V->tab); free(V->fh); free(V->ax); free(V->af);
    free(V);
}

int vr_valid(const VRep *V) { return V->n[V->cur] >= 0; }
void vr_invalidate(VRep *V) { V->n[V->cur] = -1; }
int vr_count(const VRep *V) { return V->n[V->cur]; }

int vr_box(VRep *V, const double *lo, const double *hi) {
    int k = V->k;
    if (k >= 30 || (1 << k) > V->cap) { V->n[V->cur] = -1; return -1; }
    int nv = 1 << k;
    double *x = V->x[V->cur];
    for (int m = 0; m < nv; m++) {
        int q = 0;
        uint64_t bits = 0;
        int *f = (int *)(V->f[V->cur] + (size_t)m * V->rb);
        for (int e = 0; e < k; e++) { /* lower faces (ids 0..k-1) first: the list stays sorted */
            int up = (m >> e) & 1;
            x[(size_t)m * k + e] = up ? hi[e] : lo[e];
            if (!up) {
                bits |= 1ULL << e;
                if (!V->mask) f[q++] = e;
            }
        }
        for (int e = 0; e < k; e++)
            if ((m >> e) & 1) {
                bits |= 1ULL << (k + e);
                if (!V->mask) f[q++] = k + e;
            }
        if (V->mask) memcpy(V->f[V->cur] + (size_t)m * V->rb, &bits, sizeof bits);
    }
    V->n[V->cur] = nv;
    return 0;
}

/* s[v] = a . x_v + a0 for n vertices of dimension K (a compile-time constant where inlined) */
static inline void eval_k(const double *x, int n, int K, const double *a, double a0, double *s) {
    for (int v = 0; v < n; v++) {
        const double *xv = x + (size_t)v * K;
        double t = a0;
        for (int e = 0; e < K; e++) t += a[e] * xv[e];
        s[v] = t;
    }
}

int vr_eval(VRep *V, const double *a, double a0, double eps, double *smin, double *smax) {
    int k = V->k, n = V->n[V->cur];
    const double *x = V->x[V->cur];
    double *s = V->s, lo = INFINITY, hi = -INFINITY;
    switch (k) { /* unrolled for the dimensions vertex sets are kept for */
    case 2: eval_k(x, n, 2, a, a0, s); break;
    case 3: eval_k(x, n, 3, a, a0, s); break;
    case 4: eval_k(x, n, 4, a, a0, s); break;
    case 5: eval_k(x, n, 5, a, a0, s); break;
    case 6: eval_k(x, n, 6, a, a0, s); break;
    default: eval_k(x, n, k, a, a0, s); break;
    }
    for (int v = 0; v < n; v++) {
        double t = s[v];
        lo = t < lo ? t : lo;
        hi = t > hi ? t : hi;
    }
    *smin = lo;
    *smax = hi;
    if (hi < -eps) return VR_NEG;
    if (lo > eps) return VR_POS;
    for (int v = 0; v < n; v++)
        if (fabs(s[v]) <= eps) return VR_NEAR;
    return VR_MIXED;
}


/* 1 if list a without position pa equals list b without position pb (sorted, k ids each) */
static int same_key(const int *a, int pa, const int *b, int pb, int k) {
    int i = 0, j = 0;
    for (;;) {
        if (i == pa) i++;
        if (j == pb) j++;
        if (i >= k || j >= k) return (i >= k) == (j >= k);
        if (a[i] != b[j]) return 0;
        i++;
        j++;
    }
}

/* the crossing edge (u, w) of the last vr_eval: append its new vertex (facets: those u and w
 * share, plus fid; `drop` is the position (list mode) or bit (mask mode) of u's other facet).
 * 0, or -1 if it crosses too flatly */
static int new_vertex(VRep *V, int u, int w, int drop, int fid, double rho) {
    int k = V->k;
    const double *x = V->x[V->cur], *s = V->s;
    const double *xu = x + (size_t)u * k, *xw = x + (size_t)w * k;
    double su = s[u], sw = s[w], len2 = 0.0, t = su / (su - sw);
    double *xn = V->nx + (size_t)V->nnew * k, *sum = V->nsum;
    for (int e = 0; e < k; e++) {
        double d = xw[e] - xu[e];
        len2 += d * d;
        xn[e] = xu[e] + t * d;
        sum[e] += xn[e];
    }
    if (!((su - sw) * (su - sw) >= rho * rho * len2)) return -1; /* too flat a crossing */
    unsigned char *rn = V->nf + (size_t)V->nnew * V->rb;
    const unsigned char *ru = V->f[V->cur] + (size_t)u * V->rb;
    if (V->mask) {
        uint64_t mu;
        memcpy(&mu, ru, sizeof mu);
        mu = (mu & ~(1ULL << drop)) | (1ULL << fid);
        memcpy(rn, &mu, sizeof mu);
    } else {
        const int *fu = (const int *)ru;
        int *fn = (int *)rn, c = 0;
        for (int e = 0; e < k; e++)
            if (e != drop) fn[c++] = fu[e];
        fn[c] = fid;
    }
    V->nnew++;
    return 0;
}

/* the crossing edges in mask mode by hashing: key = a vertex's mask without one of its bits
 * (ms: the smaller side's masks, gathered); O((nS + nT) k) instead of nS * nT pair tests */
static int split_masks_hashed(VRep *V, const int *S, int nS, const int *T, int nT, int fid, double rho,
                              int room, uint64_t uni) {
    int k = V->k, lg = 4;
    while ((1 << lg) < 2 * nS * k) lg++;
    if ((1 << lg) > V->tabcap) return -1;
    Slot *tab = V->tab;
    unsigned msk = (1u << lg) - 1;
    for (unsigned q = 0; q <= msk; q++) tab[q].u = -1;
    const uint64_t *ms = V->ms, above = ~0ULL << fid;
    for (int a = 0; a < nS; a++)
        for (uint64_t m = ms[a]; m; m &= m - 1) {
            uint64_t bit = m & (~m + 1), key = ms[a] & ~bit;
            unsigned q = (unsigned)((key * 0x9E3779B97F4A7C15ULL) >> (64 - lg));
            while (tab[q].u >= 0) q = (q + 1) & msk;
            tab[q].h = key;
            tab[q].u = a;
            tab[q].p = __builtin_ctzll(bit);
        }
    const unsigned char *f = V->f[V->cur];
    for (int b = 0; b < nT; b++) {
        int w = T[b];
        uint64_t mw;
        memcpy(&mw, f + (size_t)w * V->rb, sizeof mw);
        if (mw & above) return -1;
        /* w shares k-1 facets with some u only if at most one of its facets is outside the
         * union of the smaller side's: then only the key without that one can match */
        uint64_t out = mw & ~uni;
        if (out & (out - 1)) continue;
        for (uint64_t m = out ? out : mw; m; m &= m - 1) {
            uint64_t key = mw & ~(m & (~m + 1));
            unsigned q = (unsigned)((key * 0x9E3779B97F4A7C15ULL) >> (64 - lg));
            for (; tab[q].u >= 0; q = (q + 1) & msk) {
                if (tab[q].h != key) continue;
                if (V->nnew >= room) return -1;
                if (new_vertex(V, S[tab[q].u], w, tab[q].p, fid, rho)) return -1;
                break;
            }
        }
    }
    return V->nnew >= k ? 0 : -1;
}

int vr_split(VRep *V, int fid, double rho) {
    int k = V->k, n = V->n[V->cur];
    const double *s = V->s;
    const unsigned char *f = V->f[V->cur];
    size_t rb = V->rb;
    V->ns[0] = V->ns[1] = 0;
    V->nnew = 0;
    for (int e = 0; e < k; e++) V->nsum[e] = 0.0;
    if (fid >= V->nfacets) return -1;
    for (int v = 0; v < n; v++) {
        int sd = s[v] > 0.0;
        V->side[sd][V->ns[sd]++] = v;
    }
    int small = V->ns[0] <= V->ns[1] ? 0 : 1;
    const int *S = V->side[small], *T = V->side[1 - small];
    int nS = V->ns[small], nT = V->ns[1 - small], room = V->cap - (nS > nT ? nS : nT);
    if (V->mask) { /* the ids of a cell's facets grow along the path: fid is above them all */
        if (fid < 1) return -1;
        uint64_t above = ~0ULL << fid, *ms = V->ms, any = 0;
        for (int a = 0; a < nS; a++) memcpy(ms + a, f + (size_t)S[a] * rb, sizeof(uint64_t));
        for (int a = 0; a < nS; a++) any |= ms[a];
        if (any & above) return -1;
        if (nS * nT > KC_VREP_PAIRS_MAX) return split_masks_hashed(V, S, nS, T, nT, fid, rho, room, any);
        for (int b = 0; b < nT; b++) {
            int w = T[b];
            uint64_t mw;
            memcpy(&mw, f + (size_t)w * rb, sizeof mw);
            if (mw & above) return -1;
            uint64_t out = mw & ~any; /* as in split_masks_hashed */
            if (out & (out - 1)) continue;
            /* both have k facets: they share k-1 iff u has exactly one that w lacks */
            uint64_t hit = 0;
            for (int a = 0; a < nS; a++) {
                uint64_t d = ms[a] & ~mw;
                hit |= (uint64_t)(d != 0 && (d & (d - 1)) == 0);
            }
            if (!hit) continue;
            for (int a = 0; a < nS; a++) {
                uint64_t d = ms[a] & ~mw;
                if (!d || (d & (d - 1))) continue;
                if (V->nnew >= room) return -1;
                if (new_vertex(V, S[a], w, __builtin_ctzll(d), fid, rho)) return -1;
            }
        }
        return V->nnew >= k ? 0 : -1; /* a cut of a k-polytope has >= k new vertices */
    }
    int tc = 16;
    while (tc < 2 * nS * k) tc *= 2;
    if (tc > V->tabcap) return -1;
    Slot *tab = V->tab;
    const uint64_t *fh = V->fh;
    for (int q = 0; q < tc; q++) tab[q].u = -1;
    unsigned mask = (unsigned)tc - 1;
    for (int a = 0; a < nS; a++) {
        const int *fl = (const int *)(f + (size_t)S[a] * rb);
        uint64_t tot = 0;
        for (int p = 0; p < k; p++) tot += fh[fl[p]];
        for (int p = 0; p < k; p++) {
            uint64_t h = tot - fh[fl[p]]; /* the key: the list without position p */
            unsigned q = (unsigned)(h ^ (h >> 29)) & mask;
            while (tab[q].u >= 0) q = (q + 1) & mask;
            tab[q].h = h;
            tab[q].u = a;
            tab[q].p = p;
        }
    }
    for (int b = 0; b < nT; b++) {
        int w = T[b];
        const int *fw = (const int *)(f + (size_t)w * rb);
        if (fw[k - 1] >= fid) return -1;
        uint64_t tot = 0;
        for (int p = 0; p < k; p++) tot += fh[fw[p]];
        for (int p = 0; p < k; p++) {
            uint64_t h = tot - fh[fw[p]];
            unsigned q = (unsigned)(h ^ (h >> 29)) & mask;
            for (; tab[q].u >= 0; q = (q + 1) & mask) {
                if (tab[q].h != h) continue;
                int u = S[tab[q].u], pu = tab[q].p;
                if (!same_key((const int *)(f + (size_t)u * rb), pu, fw, p, k)) continue;
                if (V->nnew >= room) return -1;
                if (new_vertex(V, u, w, pu, fid, rho)) return -1;
                break; /* one edge per (w, p) */
            }
        }
    }
    return V->nnew >= k ? 0 : -1; /* a cut of a k-polytope has >= k new vertices */
}

void vr_side_point(const VRep *V, int side, double *c) {
    int k = V->k, m = V->ns[side], deep = V->side[side][0];
    const double *x = V->x[V->cur], *s = V->s;
    const int *ix = V->side[side];
    for (int a = 1; a < m; a++)
        if (fabs(s[ix[a]]) > fabs(s[deep])) deep = ix[a];
    double w = 0.5 / (double)V->nnew;
    for (int e = 0; e < k; e++) c[e] = V->nsum[e] * w + 0.5 * x[(size_t)deep * k + e];
}

/* write side `side` of the last split to (xd, fd) */
static int write_side(const VRep *V, int side, double *xd, unsigned char *fd) {
    int k = V->k, m = V->ns[side];
    size_t rb = V->rb;
    const double *x = V->x[V->cur];
    const unsigned char *f = V->f[V->cur];
    const int *ix = V->side[side];
    for (int a = 0; a < m; a++) {
        memcpy(xd + (size_t)a * k, x + (size_t)ix[a] * k, sizeof(double) * k);
        memcpy(fd + (size_t)a * rb, f + (size_t)ix[a] * rb, rb);
    }
    memcpy(xd + (size_t)m * k, V->nx, sizeof(double) * (size_t)V->nnew * k);
    memcpy(fd + (size_t)m * rb, V->nf, rb * (size_t)V->nnew);
    return m + V->nnew;
}

void vr_keep_side(VRep *V, int side) {
    int o = 1 - V->cur;
    V->n[o] = write_side(V, side, V->x[o], V->f[o]);
    V->cur = o;
}

/* room for m more vertices on the arena; 0 or -1 */
static int arena_room(VRep *V, size_t m) {
    size_t need = V->atop + m;
    if (need <= V->acap) return 0;
    if (need > V->amax) return -1;
    size_t nc = V->acap ? 2 * V->acap : 4096;
    while (nc < need) nc *= 2;
    if (nc > V->amax) nc = V->amax;
    size_t K = (size_t)V->k;
    double *ax = (double *)realloc(V->ax, sizeof(double) * nc * K);
    if (!ax) return -1;
    V->ax = ax;
    unsigned char *af = (unsigned char *)realloc(V->af, V->rb * nc);
    if (!af) return -1;
    V->af = af;
    V->acap = nc;
    return 0;
}

int vr_push_side(VRep *V, int side, size_t *off) {
    *off = V->atop;
    int m = V->ns[side] + V->nnew;
    if (arena_room(V, (size_t)m)) return -1;
    size_t K = (size_t)V->k;
    write_side(V, side, V->ax + V->atop * K, V->af + V->atop * V->rb);
    V->atop += (size_t)m;
    return m;
}

int vr_push_cur(VRep *V, size_t *off) {
    *off = V->atop;
    int m = V->n[V->cur];
    if (m < 0 || arena_room(V, (size_t)m)) return -1;
    size_t K = (size_t)V->k;
    memcpy(V->ax + V->atop * K, V->x[V->cur], sizeof(double) * (size_t)m * K);
    memcpy(V->af + V->atop * V->rb, V->f[V->cur], V->rb * (size_t)m);
    V->atop += (size_t)m;
    return m;
}

void vr_pop(VRep *V, size_t off, int n) {
    size_t K = (size_t)V->k;
    if (n >= 0 && n <= V->cap) {
        memcpy(V->x[V->cur], V->ax + off * K, sizeof(double) * (size_t)n * K);
        memcpy(V->f[V->cur], V->af + off * V->rb, V->rb * (size_t)n);
        V->n[V->cur] = n;
    } else {
        V->n[V->cur] = -1;
    }
    V->atop = off;
}

void vr_clear_arena(VRep *V) { V->atop = 0; }
