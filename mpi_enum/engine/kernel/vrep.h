/* vrep: the vertex sets (V-representations) of the search's cells in low dimension.
 *
 * In a box domain of dimension k <= VREP_MAX_K the kernel keeps, next to each cell's rows, the
 * list of the cell's vertices, each with the k facets it lies on (box faces 0 .. 2k-1, the row
 * of neuron i is facet 2k + i, so the list is sorted: neurons join the path in index order).
 * A hyperplane then meets the cell iff the cell has vertices on both sides, which needs no LP,
 * and cutting the cell is a walk over its crossing edges.  The module keeps the vertex sets
 * exact only where that is safe:
 *
 *   - every vertex lies on exactly k facets (the cell is a simple polytope); a hyperplane that
 *     passes within VREP_EPS of a vertex would break that, so vr_eval reports VR_NEAR and the
 *     caller gives the subtree back to the LPs;
 *   - a crossing edge must cross the hyperplane at an angle (|delta s| >= VREP_RHO * length),
 *     so that the new vertex's position along the edge, and every later sign taken at it, is
 *     far more accurate than VREP_EPS; otherwise vr_split fails (the LPs again).
 *
 * In a simple polytope two vertices are joined by an edge iff they share k-1 facets, so the
 * crossing edges of a cut are found by hashing those (k-1)-subsets: O((#vertices) k) per cut.
 *
 * Storage: the current cell's set (cur), one scratch set of the same capacity, and a LIFO arena
 * for the sets of the cells waiting on the search's stack (the stack is LIFO too).
 * No MPI, no Python.
 */
#ifndef MPI_ENUM_VREP_H
#define MPI_ENUM_VREP_H

#include <stddef.h>

typedef struct VRep VRep;

enum { VR_NEAR = -1, VR_NEG = 0, VR_POS = 1, VR_MIXED = 2 };

/* facet ids are < nfacets; capacity: most vertices of one cell; arena_max: most vertices held
 * for waiting cells */
VRep *vr_new(int k, int nfacets, int capacity, size_t arena_max);
void vr_free(VRep *V);

int vr_valid(const VRep *V);      /* 1 if the current cell's vertex set is known */
void vr_invalidate(VRep *V);      /* the current cell goes on without its vertex set */
int vr_count(const VRep *V);      /* vertices of the current cell (-1: not known) */

/* the current cell := the box [lo, hi] (2^k vertices); 0, or -1 if they do not fit */
int vr_box(VRep *V, const double *lo, const double *hi);

/* s_v = a . v + a0 at every vertex of the current cell (kept for vr_split): VR_NEG (all
 * < -eps), VR_POS (all > eps), VR_MIXED (both, none within eps) or VR_NEAR; smin/smax */
int vr_eval(VRep *V, const double *a, double a0, double eps, double *smin, double *smax);

/* after vr_eval gave VR_MIXED: compute the vertices where the hyperplane crosses the cell's
 * edges (they get facet id fid, which must exceed every facet id already in the cell).
 * 0, or -1 (an edge crosses too flatly, or too many vertices): the caller must not use the
 * sides then */
int vr_split(VRep *V, int fid, double rho);

/* a point inside side `side` (1: s > 0, 0: s < 0) of the last split, written to c: midway
 * between the centroid of the new vertices (inside the cut) and the side's farthest vertex */
void vr_side_point(const VRep *V, int side, double *c);

/* the current cell := side `side` of the last split */
void vr_keep_side(VRep *V, int side);

/* put side `side` of the last split (vr_push_side) or the current cell (vr_push_cur) on the
 * arena; *off receives where; returns the count held (-1: not kept, no room) */
int vr_push_side(VRep *V, int side, size_t *off);
int vr_push_cur(VRep *V, size_t *off);

/* the current cell := the arena's top set (count n at off, -1: unknown); pops it */
void vr_pop(VRep *V, size_t off, int n);
void vr_clear_arena(VRep *V);

#endif /* MPI_ENUM_VREP_H */
