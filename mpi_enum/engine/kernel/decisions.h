/* Every numeric decision of the search, in one place.
 *
 * The kernel (enum_kernel.c) uses these names; the Python binding (pymodule.c) exports each
 * of them as an attribute of mpi_enum.engine._kernel (same name without the KC_ prefix), and
 * the Python code (engine/search.py, engine/lp.py, the test oracle tests/reference_engine.py)
 * reads them from there.  So each value is written exactly once, here.
 *
 * X-macro lists: X(NAME, VALUE, "what it decides").  KC_DECISIONS_F are doubles,
 * KC_DECISIONS_I integers; each entry becomes `KC_<NAME>`.
 */
#ifndef MPI_ENUM_DECISIONS_H
#define MPI_ENUM_DECISIONS_H

#define KC_DECISIONS_F(X)                                                                          \
    /* --- the search (the reference engine makes the same decisions) --- */                       \
    X(CONST_NEURON_REL, 1e-13,                                                                     \
      "a neuron whose hyperplane normal has norm <= this * the layer scale is constant on the "    \
      "cell (bit = its constant > 0, no row)")                                                     \
    X(RANK_REL, 1e-10,                                                                             \
      "a singular value counts for the affine rank if > this * the largest one")                  \
    X(RANK_ZERO_REL, 1e-12,                                                                        \
      "the affine map is zero (rank 0) if its largest singular value is <= this * the layer scale") \
    X(RANK_FAST_MARGIN, 1e-6,                                                                      \
      "a rank is certified full without the SVD when the bound sigma_min / sigma_max >= this "     \
      "(from a Cholesky factor of the Gram matrix; far above RANK_REL)")                          \
    X(TINY, 1e-300, "floor added to scales so that a zero scale never divides")                   \
    X(DROP_MARGIN, 1e-7,                                                                           \
      "a Chebyshev radius (or box bound) below -this proves a side empty: the other side's row "   \
      "is redundant and is dropped")                                                               \
    X(BALL_CAP, 1.0, "the Chebyshev radius is capped here (the LP's t <= cap), and so is the root ball") \
    /* --- the dense active-set LP's certification --- */                                          \
    X(BAND_REL, 0.5,                                                                               \
      "certification band = BAND_REL * tol + BAND_ABS: a dense-LP answer is used only if its "    \
      "feasible radius > tol + band or its dual bound < tol - band, else HiGHS decides")          \
    X(BAND_ABS, 1e-13, "absolute part of the certification band")                                  \
    /* --- the dense active-set LP's numerics (any doubt goes to HiGHS, never a guess) --- */     \
    X(GS_DEP, 1e-11,                                                                               \
      "Gram-Schmidt: a working-set row whose residual norm is <= this is dependent (LP gives up)") \
    X(LP_DIR_ZERO, 1e-10,                                                                          \
      "the projected ascent direction is zero if its norm is <= this (then multipliers decide)")  \
    X(LP_MULT_NEG, 1e-12, "a multiplier < -this is negative: its row leaves the working set")     \
    X(RATIO_MIN, 1e-9, "ratio test: a row blocks the step only if a . p > this")                  \
    /* --- the box LP (boxlp.c, k > DENSE_LP_MAX_K on box domains; certified like the dense LP) --- */ \
    X(BOXLP_FTOL, 1e-9, "box LP: a basic variable is primal infeasible beyond this (relative)")   \
    X(BOXLP_DTOL, 1e-11, "box LP: reduced-cost tolerance of the ratio test (Harris)")            \
    X(BOXLP_PIVTOL, 1e-9, "box LP: smallest pivot element accepted")                             \
    /* --- the subspace LP (box domains whose first layer is at most half as wide as the input) --- */ \
    X(SUB_CAP_REL, 1e-3,                                                                           \
      "subspace LP: it stops at an inscribed radius of this * the box's smallest half-width (a "   \
      "witness needs only > tol + band; a smaller target is reached in fewer steps: measured)")    \
    X(SUB_CAP_MIN, 100.0, "subspace LP: ... but at least this * (tol + band)")                     \
    X(SUB_DEP, 1e-8, "subspace LP: a first-layer row with residual <= this * its norm is dependent") \
    /* --- the vertex sets of low-dimensional cells (vrep.c, box domains with k <= VREP_MAX_K) --- */ \
    X(VREP_EPS, 1e-7,                                                                              \
      "vertex sets: a hyperplane within this of a vertex (signed distance, y units) makes the "   \
      "cell non-simple: its subtree goes back to the LPs")                                         \
    X(VREP_RHO, 1e-5,                                                                              \
      "vertex sets: an edge must cross a hyperplane with |delta s| >= this * its length, else "   \
      "the subtree goes back to the LPs (keeps each new vertex far more accurate than VREP_EPS)") \
    /* --- the one-sided Jacobi SVD behind the affine ranks --- */                                 \
    X(JACOBI_ORTH, 1e-15, "Jacobi: two columns are orthogonal if |u . w| <= this * |u| |w|")

#define KC_DECISIONS_I(X)                                                                          \
    X(DENSE_LP_MAX_K, 32,                                                                          \
      "input dimension k up to which the kernel's dense O(k^3)-per-pivot LP is tried first; for "  \
      "larger k every LP goes straight to HiGHS (the dense LP is slower there: measured)")        \
    X(LP_MAXIT_BASE, 60, "dense LP iteration limit = LP_MAXIT_BASE + LP_MAXIT_PER_ROW * rows")     \
    X(LP_MAXIT_PER_ROW, 6, "see LP_MAXIT_BASE")                                                    \
    X(LP_BLAND_BASE, 4,                                                                            \
      "after LP_BLAND_BASE + LP_BLAND_PER_VAR * (k+1) degenerate steps, Bland's rule (no cycling)") \
    X(LP_BLAND_PER_VAR, 2, "see LP_BLAND_BASE")                                                    \
    X(RANK_FAST_MAX, 8, "the certified full-rank test (Gram + Cholesky) for min(rows, cols) <= this") \
    X(JACOBI_SWEEPS, 80, "Jacobi SVD: at most this many sweeps")                                   \
    X(BOXLP_REFACTOR, 48, "box LP: pivots between refactorisations of the basis inverse")        \
    X(BOXLP_MIN_K, 9,                                                                              \
      "on a box domain the box LP, not the dense LP, decides for k > this (measured: from k = 10 "  \
      "on it is faster, 9x at k = 32; at k <= 8 the dense LP is)")                                 \
    X(SUB_BOX_MAX, 64, "subspace LP: most box faces taken in as rows")                              \
    X(SUB_BOX_STEP, 8, "subspace LP: box faces added per round (those nearest its point)")         \
    X(SUB_ROUNDS, 6, "subspace LP: at most this many rounds of adding box faces")                  \
    X(VREP_MAX_K, 6,                                                                               \
      "box domains with k <= this keep every cell's vertex set: a hyperplane's sides are decided " \
      "from the vertices, without LPs (measured: 7x fewer instructions at k = 4, 2x at k = 6, "    \
      "1.4x more at k = 8)")                          \
    X(VREP_PAIRS_MAX, 256,                                                                         \
      "vertex sets: a cut tests vertex pairs directly up to this many pairs, else hashes (speed only)") \
    X(VREP_CAP, 4096, "vertex sets: most vertices of one cell (more: the subtree goes to the LPs)")

#define KC_DEFINE_F_(name, value, doc) static const double KC_##name = (value);
#define KC_DEFINE_I_(name, value, doc) KC_##name = (value),
KC_DECISIONS_F(KC_DEFINE_F_)
enum { KC_DECISIONS_I(KC_DEFINE_I_) KC_DECISIONS_I_END_ };
#undef KC_DEFINE_F_
#undef KC_DEFINE_I_

#endif /* MPI_ENUM_DECISIONS_H */
