/* mpi_enum.engine._kernel: the CPython binding of the search kernel (enum_kernel.c, kernel.h).
 *
 * CPython C API and the buffer protocol only (no numpy C API): arrays come in as any C-contiguous
 * float64 buffer and go out as bytes / bytearray (numpy.frombuffer on the Python side).
 *
 *   Kernel(k, widths, W, b, wscale, G, h, ylo, yhi, tol, fallback, *, band_rel=BAND_REL,
 *          dense_max_k=DENSE_LP_MAX_K, emax=EMIT_MAX, vrep_max_k=VREP_MAX_K, slope=None, linear=None)
 *     slope: float64 (N) factors of the neurons' outputs on their inactive side (None: all ReLU);
 *     linear: N bytes, 1 = linear neuron (None: none)
 *     fallback(ids, A, c, a, c0) -> (t, y): the HiGHS Chebyshev LP (engine/lp.py); ids a tuple of
 *     row ids (2*i+bit), A/c/a float64 bytes (nrows*k, nrows, k).  An exception it raises stops
 *     the kernel and propagates out of the Kernel method that was running.
 *   .start(depth, bits, yc, r)   .run(max_nodes) -> 0 done / 1 more   .emitted()   .frontier()
 *   .pending()   .stats()   .lp(A, c, a, c0, ystart) -> (t, y)   (one LP, for tests)
 *
 * The module also exports every decision constant of decisions.h (same names, no KC_ prefix),
 * DECISIONS (name -> what it decides), VERSION, EMIT_MAX, STATS (names of stats() entries) and
 * SOURCES_SHA256 (name -> sha256 of each kernel source as compiled; CMakeLists.txt sets it).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "kernel.h"

#ifndef KC_SOURCES_SHA256
#define KC_SOURCES_SHA256 ""
#endif

typedef struct {
    PyObject_HEAD
    kc_ctx *ctx;
    PyObject *fallback; /* callable or NULL */
    int k, L, N, emax, dense, box_lp, vertex_sets, busy;
    long long lp_serial; /* fresh (negative) row ids for lp() */
} KernelObject;

static PyTypeObject KernelType;

/* STATS (the module attribute) names the KC_NSTATS counters of kernel.h in order */
typedef char kc_nstats_matches_STATS[(KC_NSTATS == 12) ? 1 : -1];

/* ------------------------------------------------------------------ helpers */

static int is_f64_format(const char *f) {
    if (!f) return 1; /* no format requested: bytes-like, taken as raw doubles */
    if (f[0] == '@' || f[0] == '=') f++;
#if PY_LITTLE_ENDIAN
    else if (f[0] == '<') f++;
#else
    else if (f[0] == '>') f++;
#endif
    return strcmp(f, "d") == 0;
}

/* a C-contiguous float64 buffer of n elements (n < 0: any length, *count set) */
static int get_f64(PyObject *obj, Py_buffer *view, Py_ssize_t n, Py_ssize_t *count, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous float64 buffer, got %.100s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (view->itemsize != 8 || !is_f64_format(view->format) || view->len % 8) {
        PyErr_Format(PyExc_TypeError, "%s: expected float64 data (format '%s')", name,
                     view->format ? view->format : "?");
        PyBuffer_Release(view);
        return -1;
    }
    Py_ssize_t have = view->len / 8;
    if (n >= 0 && have != n) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd float64 values, got %zd", name, n, have);
        PyBuffer_Release(view);
        return -1;
    }
    if (count) *count = have;
    return 0;
}

static void release_all(Py_buffer *views, int n) {
    for (int i = 0; i < n; i++)
        if (views[i].obj) PyBuffer_Release(&views[i]);
}

/* raise the Python exception for a kernel error code (keeps an exception already set) */
static PyObject *kernel_error(int code) {
    if (PyErr_Occurred()) return NULL;
    switch (code) {
    case KC_ERR_NOMEM: return PyErr_NoMemory();
    case KC_ERR_ARG: PyErr_SetString(PyExc_ValueError, "mpi_enum kernel: invalid arguments"); break;
    case KC_ERR_LP_FN:
        PyErr_SetString(PyExc_RuntimeError, "mpi_enum kernel: the LP fallback failed without an exception");
        break;
    case KC_ERR_NO_LP_FN:
        PyErr_SetString(PyExc_RuntimeError, "mpi_enum kernel: an LP needed the HiGHS fallback and none was given");
        break;
    case KC_ERR_STATE: PyErr_SetString(PyExc_RuntimeError, "mpi_enum kernel: run() before start()"); break;
    default: PyErr_Format(PyExc_RuntimeError, "mpi_enum kernel: error %d", code);
    }
    return NULL;
}

static int enter(KernelObject *self) {
    if (!self->ctx) {
        PyErr_SetString(PyExc_RuntimeError, "mpi_enum kernel: no context");
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "mpi_enum kernel: re-entered from its own LP fallback");
        return -1;
    }
    self->busy = 1;
    return 0;
}

/* ------------------------------------------------------------------ the LP callback */

static int lp_trampoline(void *user, int nrows, const int *ids, const double *A, const double *c, const double *a,
                         double c0, double *t_out, double *y_out) {
    KernelObject *self = (KernelObject *)user;
    int k = self->k, status = -1;
    PyObject *tids = NULL, *bA = NULL, *bc = NULL, *ba = NULL, *fc0 = NULL, *res = NULL;
    tids = PyTuple_New(nrows);
    if (!tids) goto done;
    for (int i = 0; i < nrows; i++) {
        PyObject *v = PyLong_FromLong(ids[i]);
        if (!v) goto done;
        PyTuple_SET_ITEM(tids, i, v);
    }
    bA = PyBytes_FromStringAndSize((const char *)A, (Py_ssize_t)nrows * k * (Py_ssize_t)sizeof(double));
    bc = PyBytes_FromStringAndSize((const char *)c, (Py_ssize_t)nrows * (Py_ssize_t)sizeof(double));
    ba = PyBytes_FromStringAndSize((const char *)a, (Py_ssize_t)k * (Py_ssize_t)sizeof(double));
    fc0 = PyFloat_FromDouble(c0);
    if (!bA || !bc || !ba || !fc0) goto done;
    res = PyObject_CallFunctionObjArgs(self->fallback, tids, bA, bc, ba, fc0, NULL);
    if (!res) goto done;
    if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 2) {
        PyErr_SetString(PyExc_TypeError, "the LP fallback must return a tuple (t, y)");
        goto done;
    }
    double t = PyFloat_AsDouble(PyTuple_GET_ITEM(res, 0));
    if (t == -1.0 && PyErr_Occurred()) goto done;
    Py_buffer yv;
    if (get_f64(PyTuple_GET_ITEM(res, 1), &yv, k, NULL, "the LP fallback's y") < 0) goto done;
    memcpy(y_out, yv.buf, sizeof(double) * (size_t)k);
    PyBuffer_Release(&yv);
    *t_out = t;
    status = 0;
done:
    Py_XDECREF(tids); Py_XDECREF(bA); Py_XDECREF(bc); Py_XDECREF(ba); Py_XDECREF(fc0); Py_XDECREF(res);
    return status;
}

/* ------------------------------------------------------------------ Kernel type */

static PyObject *Kernel_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"k", "widths", "W", "b", "wscale", "G", "h", "ylo", "yhi", "tol", "fallback",
                             "band_rel", "dense_max_k", "emax", "vrep_max_k", "slope", "linear", "group", NULL};
    int k, dense_max_k = KC_DENSE_LP_MAX_K, emax = KC_EMIT_MAX_DEFAULT, vrep_max_k = KC_VREP_MAX_K;
    double tol, band_rel = KC_BAND_REL;
    PyObject *widths_obj, *Wo, *bo, *wso, *Go, *ho, *ylo_o, *yhi_o, *fallback, *slope_o = Py_None, *lin_o = Py_None, *grp_o = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iOOOOOOOOdO|$diiiOOO:Kernel", kwlist, &k, &widths_obj, &Wo, &bo,
                                     &wso, &Go, &ho, &ylo_o, &yhi_o, &tol, &fallback, &band_rel, &dense_max_k,
                                     &emax, &vrep_max_k, &slope_o, &lin_o, &grp_o))
        return NULL;
    if (k < 1) return PyErr_Format(PyExc_ValueError, "k must be >= 1 (got %d)", k);
    if (emax < 1) return PyErr_Format(PyExc_ValueError, "emax must be >= 1 (got %d)", emax);
    if (fallback != Py_None && !PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable or None");
        return NULL;
    }
    int bounded = ylo_o != Py_None;
    if ((yhi_o != Py_None) != bounded) {
        PyErr_SetString(PyExc_ValueError, "ylo and yhi must both be given or both be None");
        return NULL;
    }
    PyObject *wseq = PySequence_Fast(widths_obj, "widths must be a sequence of ints");
    if (!wseq) return NULL;
    Py_ssize_t L = PySequence_Fast_GET_SIZE(wseq);
    if (L < 1 || L > (1 << 20)) {
        Py_DECREF(wseq);
        return PyErr_Format(PyExc_ValueError, "need 1 to 2^20 hidden layers (got %zd)", L);
    }
    int *widths = (int *)PyMem_Malloc(sizeof(int) * (size_t)L);
    if (!widths) { Py_DECREF(wseq); return PyErr_NoMemory(); }
    Py_ssize_t nW = 0, nb = 0, in = k;
    for (Py_ssize_t l = 0; l < L; l++) {
        long w = PyLong_AsLong(PySequence_Fast_GET_ITEM(wseq, l));
        if (w == -1 && PyErr_Occurred()) { PyMem_Free(widths); Py_DECREF(wseq); return NULL; }
        if (w < 1 || w > (1 << 26)) {
            PyMem_Free(widths); Py_DECREF(wseq);
            return PyErr_Format(PyExc_ValueError, "layer widths must be in 1..2^26 (got %ld)", w);
        }
        widths[l] = (int)w;
        nW += (Py_ssize_t)w * in;
        nb += w;
        in = w;
    }
    Py_DECREF(wseq);

    Py_buffer v[8], lin, grp;
    memset(v, 0, sizeof(v));
    memset(&lin, 0, sizeof(lin));
    memset(&grp, 0, sizeof(grp));
    Py_ssize_t nG = 0;
    KernelObject *self = NULL;
    if (get_f64(Wo, &v[0], nW, NULL, "W") < 0 || get_f64(bo, &v[1], nb, NULL, "b") < 0 ||
        get_f64(wso, &v[2], L, NULL, "wscale") < 0 || get_f64(Go, &v[3], -1, &nG, "G") < 0)
        goto fail;
    if (nG % k) {
        PyErr_Format(PyExc_ValueError, "G: %zd values is not a multiple of k = %d", nG, k);
        goto fail;
    }
    if (get_f64(ho, &v[4], nG / k, NULL, "h") < 0) goto fail;
    if (bounded && (get_f64(ylo_o, &v[5], k, NULL, "ylo") < 0 || get_f64(yhi_o, &v[6], k, NULL, "yhi") < 0))
        goto fail;
    if (slope_o != Py_None && get_f64(slope_o, &v[7], nb, NULL, "slope") < 0) goto fail;
    if (lin_o != Py_None) {
        if (PyObject_GetBuffer(lin_o, &lin, PyBUF_C_CONTIGUOUS) < 0) goto fail;
        if (lin.len != nb) {
            PyErr_Format(PyExc_ValueError, "linear: %zd bytes, expected %zd (one per neuron)", lin.len, nb);
            goto fail;
        }
    }
    if (grp_o != Py_None) { /* int32 group ids, one per neuron */
        if (PyObject_GetBuffer(grp_o, &grp, PyBUF_C_CONTIGUOUS) < 0) goto fail;
        if (grp.len != nb * (Py_ssize_t)sizeof(int)) {
            PyErr_Format(PyExc_ValueError, "group: %zd bytes, expected %zd (one int32 per neuron)", grp.len,
                         nb * (Py_ssize_t)sizeof(int));
            goto fail;
        }
    }

    self = (KernelObject *)type->tp_alloc(type, 0);
    if (!self) goto fail;
    self->k = k;
    self->L = (int)L;
    self->emax = emax;
    if (fallback != Py_None) {
        Py_INCREF(fallback);
        self->fallback = fallback;
    }
    kc_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.k = k;
    cfg.L = (int)L;
    cfg.widths = widths;
    cfg.W = (const double *)v[0].buf;
    cfg.b = (const double *)v[1].buf;
    cfg.wscale = (const double *)v[2].buf;
    cfg.mG = (int)(nG / k);
    cfg.G = (const double *)v[3].buf;
    cfg.h = (const double *)v[4].buf;
    cfg.bounded = bounded;
    cfg.ylo = bounded ? (const double *)v[5].buf : NULL;
    cfg.yhi = bounded ? (const double *)v[6].buf : NULL;
    cfg.tol = tol;
    cfg.band_rel = band_rel;
    cfg.dense_max_k = dense_max_k;
    cfg.emax = emax;
    cfg.vrep_max_k = vrep_max_k;
    cfg.slope = slope_o != Py_None ? (const double *)v[7].buf : NULL;
    cfg.linear = lin_o != Py_None ? (const unsigned char *)lin.buf : NULL;
    cfg.group = grp_o != Py_None ? (const int *)grp.buf : NULL;
    cfg.lp_fn = self->fallback ? lp_trampoline : NULL;
    cfg.lp_user = self;
    int err = KC_OK;
    self->ctx = kc_new(&cfg, &err); /* copies everything: the buffers can go */
    release_all(v, 8);
    if (lin.obj) PyBuffer_Release(&lin);
    if (grp.obj) PyBuffer_Release(&grp);
    PyMem_Free(widths);
    if (!self->ctx) {
        Py_DECREF(self);
        return kernel_error(err);
    }
    self->N = kc_n_neurons(self->ctx);
    self->dense = kc_lp_kind(self->ctx) == KC_LP_DENSE;
    self->box_lp = kc_lp_kind(self->ctx) == KC_LP_BOX;
    self->vertex_sets = kc_vertex_sets(self->ctx);
    return (PyObject *)self;
fail:
    release_all(v, 8);
    if (lin.obj) PyBuffer_Release(&lin);
    if (grp.obj) PyBuffer_Release(&grp);
    PyMem_Free(widths);
    Py_XDECREF(self);
    return NULL;
}

static int Kernel_traverse(KernelObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->fallback);
    return 0;
}

static int Kernel_clear(KernelObject *self) {
    Py_CLEAR(self->fallback);
    return 0;
}

static void Kernel_dealloc(KernelObject *self) {
    PyObject_GC_UnTrack(self);
    Kernel_clear(self);
    kc_free(self->ctx);
    self->ctx = NULL;
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Kernel_start(KernelObject *self, PyObject *args) {
    int depth;
    double r;
    Py_buffer bits, yc;
    PyObject *ycobj;
    if (!PyArg_ParseTuple(args, "iy*Od:start", &depth, &bits, &ycobj, &r)) return NULL;
    if (depth < 0 || depth > self->N || bits.len < depth) {
        PyBuffer_Release(&bits);
        return PyErr_Format(PyExc_ValueError, "start: depth %d with %zd bits (N = %d)", depth, bits.len, self->N);
    }
    if (get_f64(ycobj, &yc, self->k, NULL, "yc") < 0) { PyBuffer_Release(&bits); return NULL; }
    if (enter(self) < 0) { PyBuffer_Release(&bits); PyBuffer_Release(&yc); return NULL; }
    int rc = kc_start(self->ctx, depth, (const unsigned char *)bits.buf, (const double *)yc.buf, r);
    self->busy = 0;
    PyBuffer_Release(&bits);
    PyBuffer_Release(&yc);
    if (rc < 0) return kernel_error(-rc);
    Py_RETURN_NONE;
}

static PyObject *Kernel_run(KernelObject *self, PyObject *arg) {
    long long n = PyLong_AsLongLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 0) return PyErr_Format(PyExc_ValueError, "run: max_nodes must be >= 0");
    if (enter(self) < 0) return NULL;
    int rc = kc_run(self->ctx, n);
    self->busy = 0;
    if (rc < 0) return kernel_error(-rc);
    return PyLong_FromLong(rc);
}

static PyObject *Kernel_emitted(KernelObject *self, PyObject *Py_UNUSED(ignored)) {
    if (!self->ctx) return kernel_error(KC_ERR_STATE);
    Py_ssize_t n = kc_nemit(self->ctx), N = self->N, k = self->k, L = self->L;
    return Py_BuildValue("(nN N N N)", n,
                         PyBytes_FromStringAndSize((const char *)kc_emit_bits(self->ctx), n * N),
                         PyByteArray_FromStringAndSize((const char *)kc_emit_y(self->ctx), n * k * 8),
                         PyByteArray_FromStringAndSize((const char *)kc_emit_r(self->ctx), n * 8),
                         PyByteArray_FromStringAndSize((const char *)kc_emit_rank(self->ctx),
                                                       n * L * (Py_ssize_t)sizeof(int)));
}

static PyObject *Kernel_pending(KernelObject *self, PyObject *Py_UNUSED(ignored)) {
    if (!self->ctx) return kernel_error(KC_ERR_STATE);
    return PyLong_FromLong(kc_pending(self->ctx));
}

static PyObject *Kernel_frontier(KernelObject *self, PyObject *Py_UNUSED(ignored)) {
    if (enter(self) < 0) return NULL;
    int n = kc_pending(self->ctx), N = self->N, k = self->k;
    PyObject *out = NULL;
    size_t nn = n > 0 ? (size_t)n : 1;
    int *depths = (int *)PyMem_Malloc(sizeof(int) * nn);
    unsigned char *bits = (unsigned char *)PyMem_Malloc(nn * (size_t)(N > 0 ? N : 1));
    double *ys = (double *)PyMem_Malloc(sizeof(double) * nn * (size_t)k);
    double *rs = (double *)PyMem_Malloc(sizeof(double) * nn);
    if (!depths || !bits || !ys || !rs) {
        PyErr_NoMemory();
        goto done;
    }
    kc_frontier(self->ctx, depths, bits, ys, rs);
    out = PyList_New(n);
    if (!out) goto done;
    for (int s = 0; s < n; s++) {
        PyObject *item = Py_BuildValue("(iN N d)", depths[s],
                                       PyBytes_FromStringAndSize((const char *)bits + (size_t)s * N, depths[s]),
                                       PyByteArray_FromStringAndSize((const char *)(ys + (size_t)s * k),
                                                                     (Py_ssize_t)k * 8),
                                       rs[s]);
        if (!item) { Py_CLEAR(out); goto done; }
        PyList_SET_ITEM(out, s, item);
    }
done:
    self->busy = 0;
    PyMem_Free(depths); PyMem_Free(bits); PyMem_Free(ys); PyMem_Free(rs);
    return out;
}

static PyObject *Kernel_stats(KernelObject *self, PyObject *Py_UNUSED(ignored)) {
    if (!self->ctx) return kernel_error(KC_ERR_STATE);
    int n = KC_NSTATS + self->L;
    long long *s = (long long *)PyMem_Malloc(sizeof(long long) * (size_t)n);
    if (!s) return PyErr_NoMemory();
    kc_stats(self->ctx, s);
    PyObject *t = PyTuple_New(n);
    for (int i = 0; t && i < n; i++) {
        PyObject *v = PyLong_FromLongLong(s[i]);
        if (!v) { Py_CLEAR(t); break; }
        PyTuple_SET_ITEM(t, i, v);
    }
    PyMem_Free(s);
    return t;
}

static PyObject *Kernel_lp(KernelObject *self, PyObject *args) {
    PyObject *Ao, *co, *ao, *yso;
    double c0;
    if (!PyArg_ParseTuple(args, "OOOdO:lp", &Ao, &co, &ao, &c0, &yso)) return NULL;
    Py_buffer v[4];
    memset(v, 0, sizeof(v));
    Py_ssize_t nA = 0;
    int k = self->k, *ids = NULL;
    PyObject *out = NULL, *y = NULL;
    if (get_f64(Ao, &v[0], -1, &nA, "A") < 0) return NULL;
    if (nA % k || nA / k > self->N) {
        PyErr_Format(PyExc_ValueError, "lp: A must hold nrows * k values with nrows <= N = %d", self->N);
        goto done;
    }
    int nrows = (int)(nA / k);
    if (get_f64(co, &v[1], nrows, NULL, "c") < 0 || get_f64(ao, &v[2], k, NULL, "a") < 0 ||
        get_f64(yso, &v[3], k, NULL, "ystart") < 0)
        goto done;
    ids = (int *)PyMem_Malloc(sizeof(int) * (size_t)(nrows > 0 ? nrows : 1));
    y = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)k * 8);
    if (!ids || !y) { if (!ids) PyErr_NoMemory(); goto done; }
    for (int i = 0; i < nrows; i++) ids[i] = (int)(-1 - (self->lp_serial++ % 1000000000LL));
    if (enter(self) < 0) goto done;
    double t = kc_lp(self->ctx, nrows, ids, (const double *)v[0].buf, (const double *)v[1].buf,
                     (const double *)v[2].buf, c0, (const double *)v[3].buf, (double *)PyByteArray_AS_STRING(y));
    self->busy = 0;
    int err = kc_error(self->ctx);
    if (err) { kernel_error(err); goto done; }
    out = Py_BuildValue("(dO)", t, y);
done:
    release_all(v, 4);
    PyMem_Free(ids);
    Py_XDECREF(y);
    return out;
}

static PyObject *Kernel_get_int(KernelObject *self, void *which) {
    switch ((int)(intptr_t)which) {
    case 0: return PyLong_FromLong(self->k);
    case 1: return PyLong_FromLong(self->L);
    case 2: return PyLong_FromLong(self->N);
    case 3: return PyLong_FromLong(self->emax);
    case 4: return PyBool_FromLong(self->dense);
    case 5: return PyBool_FromLong(self->box_lp);
    default: return PyBool_FromLong(self->vertex_sets);
    }
}

static PyGetSetDef Kernel_getset[] = {
    {"k", (getter)Kernel_get_int, NULL, "input dimension", (void *)0},
    {"L", (getter)Kernel_get_int, NULL, "hidden layers", (void *)1},
    {"N", (getter)Kernel_get_int, NULL, "hidden neurons", (void *)2},
    {"emax", (getter)Kernel_get_int, NULL, "most nodes (and regions) per run()", (void *)3},
    {"dense", (getter)Kernel_get_int, NULL, "True if the dense LP is tried before HiGHS (k <= dense_max_k, no box LP)",
     (void *)4},
    {"box_lp", (getter)Kernel_get_int, NULL,
     "True if the box LP is tried before HiGHS (box domains, k > BOXLP_MIN_K or > dense_max_k)", (void *)5},
    {"vertex_sets", (getter)Kernel_get_int, NULL,
     "True if the cells' vertex sets decide first (box domains, k <= vrep_max_k)", (void *)6},
    {NULL, NULL, NULL, NULL, NULL}};

static PyMethodDef Kernel_methods[] = {
    {"start", (PyCFunction)Kernel_start, METH_VARARGS,
     "start(depth, bits, yc, r): make the work item the only pending node"},
    {"run", (PyCFunction)Kernel_run, METH_O,
     "run(max_nodes) -> 0 (subtree done) or 1 (nodes remain); at most emax nodes"},
    {"emitted", (PyCFunction)Kernel_emitted, METH_NOARGS,
     "emitted() -> (n, bits bytes n*N, y bytearray n*k f64, r bytearray n f64, ranks bytearray n*L int)"},
    {"pending", (PyCFunction)Kernel_pending, METH_NOARGS, "pending() -> number of pending nodes"},
    {"frontier", (PyCFunction)Kernel_frontier, METH_NOARGS,
     "frontier() -> [(depth, bits, y bytearray, r)], shallowest first; empties the stack"},
    {"stats", (PyCFunction)Kernel_stats, METH_NOARGS, "stats() -> counters (see STATS), then L layer counts"},
    {"lp", (PyCFunction)Kernel_lp, METH_VARARGS,
     "lp(A, c, a, c0, ystart) -> (t, y bytearray): one Chebyshev LP as the search solves it (tests)"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject KernelType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mpi_enum.engine._kernel.Kernel",
    .tp_basicsize = sizeof(KernelObject),
    .tp_dealloc = (destructor)Kernel_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The search kernel for one problem (see the module docstring).",
    .tp_traverse = (traverseproc)Kernel_traverse,
    .tp_clear = (inquiry)Kernel_clear,
    .tp_methods = Kernel_methods,
    .tp_getset = Kernel_getset,
    .tp_new = Kernel_new,
};

/* ------------------------------------------------------------------ module */

static int add_obj(PyObject *m, const char *name, PyObject *obj) {
    if (!obj) return -1;
    if (PyModule_AddObject(m, name, obj) < 0) {
        Py_DECREF(obj);
        return -1;
    }
    return 0;
}

static int add_decision(PyObject *m, PyObject *docs, const char *name, PyObject *value, const char *doc) {
    PyObject *d = PyUnicode_FromString(doc);
    if (!d || !value) { Py_XDECREF(d); Py_XDECREF(value); return -1; }
    int rc = PyDict_SetItemString(docs, name, d);
    Py_DECREF(d);
    if (rc < 0) { Py_DECREF(value); return -1; }
    return add_obj(m, name, value);
}

/* "name=sha,name=sha" (CMake) -> {name: sha} */
static PyObject *parse_sources(const char *spec) {
    PyObject *d = PyDict_New(), *s = PyUnicode_FromString(spec), *parts = NULL, *sep = NULL;
    if (!d || !s) goto fail;
    sep = PyUnicode_FromString(",");
    if (!sep) goto fail;
    parts = PyUnicode_Split(s, sep, -1);
    Py_DECREF(sep);
    if (!parts) goto fail;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(parts); i++) {
        PyObject *eq = PyUnicode_FromString("="), *kv;
        if (!eq) goto fail;
        kv = PyUnicode_Split(PyList_GET_ITEM(parts, i), eq, 1);
        Py_DECREF(eq);
        if (!kv) goto fail;
        if (PyList_GET_SIZE(kv) == 2 &&
            PyDict_SetItem(d, PyList_GET_ITEM(kv, 0), PyList_GET_ITEM(kv, 1)) < 0) {
            Py_DECREF(kv);
            goto fail;
        }
        Py_DECREF(kv);
    }
    Py_DECREF(parts);
    Py_DECREF(s);
    return d;
fail:
    Py_XDECREF(parts); Py_XDECREF(s); Py_XDECREF(d);
    return NULL;
}

static struct PyModuleDef kernel_module = {
    PyModuleDef_HEAD_INIT, "_kernel",
    "The compiled search kernel of mpi_enum (enum_kernel.c) and its decision constants (decisions.h).",
    -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__kernel(void) {
    if (PyType_Ready(&KernelType) < 0) return NULL;
    PyObject *m = PyModule_Create(&kernel_module);
    if (!m) return NULL;
    PyObject *docs = PyDict_New();
    if (!docs) goto fail;
    if (PyModule_AddObject(m, "DECISIONS", docs) < 0) { Py_DECREF(docs); goto fail; }
#define KC_ADD_F_(name, value, doc) \
    if (add_decision(m, docs, #name, PyFloat_FromDouble(KC_##name), doc) < 0) goto fail;
#define KC_ADD_I_(name, value, doc) \
    if (add_decision(m, docs, #name, PyLong_FromLong(KC_##name), doc) < 0) goto fail;
    KC_DECISIONS_F(KC_ADD_F_)
    KC_DECISIONS_I(KC_ADD_I_)
#undef KC_ADD_F_
#undef KC_ADD_I_
    if (add_obj(m, "VERSION", PyLong_FromLong(kc_version())) < 0) goto fail;
    if (add_obj(m, "EMIT_MAX", PyLong_FromLong(KC_EMIT_MAX_DEFAULT)) < 0) goto fail;
    if (add_obj(m, "STATS", Py_BuildValue("(ssssssssssss)", "nodes", "lps", "regions", "cert_both", "screened",
                                          "lp_fallbacks", "lp_iters", "lp_fail", "vertex_decisions",
                                          "vertex_witnesses", "vertex_lost", "sub_lp")) < 0)
        goto fail;
    if (add_obj(m, "SOURCES_SHA256", parse_sources(KC_SOURCES_SHA256)) < 0) goto fail;
    Py_INCREF(&KernelType);
    if (PyModule_AddObject(m, "Kernel", (PyObject *)&KernelType) < 0) {
        Py_DECREF(&KernelType);
        goto fail;
    }
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
