/* The two hot loops of the engine, in C: the in-order path of stage 1
 * (batch.apply_columns) and ServiceTracker.apply_many.
 *
 * Why: in an alert storm every event changes a state, and what is left per event in
 * Python is bookkeeping (a few list appends, dict lookups, bitmask updates) that the
 * interpreter runs at ~30 ns a bytecode. These functions do the same steps on the same
 * Python objects (the trackers' columns and dicts, so persistence, reports and the
 * pure-Python twins see no difference); everything rare (late events,
 * compaction, re-evaluation of the past, blame of a new set of down components) calls
 * back into the Python methods. The pure-Python code stays the reference: the test
 * suite runs the engine properties on both (SLAWATCH_NATIVE=0 turns this module off).
 *
 * Bitmasks of services with at most 64 components are kept in a uint64 and the
 * requirement is evaluated from a flat program (see requirements.mask_program); larger
 * ones use Python ints and the model's compiled Python functions.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

/* Set once by setup(): the Timeline class, NO_TAG, math.inf as a float object, and
 * array.array with its append (a timeline's times, states and tag indexes are
 * array('d'), array('b') and array('I'): read here through the buffer protocol,
 * appended through array.append; a tag is its index in the timeline's table, 0 for
 * NO_TAG, looked up in the timeline's ``_gx`` and added by ``Timeline.intern``). */
static PyObject *Timeline_cls = NULL;
static PyTypeObject *Array_type = NULL;
static PyObject *NO_TAG_INDEX = NULL;  /* streams.timeline._NO_TAG_INDEX: shared, never mutated */
static PyObject *Array_append = NULL;
static PyObject *NO_TAG = NULL;
static PyObject *INF_obj = NULL;
static PyObject *UNMAPPED = NULL;
static PyObject *STATE_INT[3];  /* the ints 0, 1, 2, owned */

static PyObject *s_intern;
static PyObject *s_compact, *s_append_state, *s_assign, *s_assign_columns, *s_settle, *s_blame_mask, *s_plan, *s_small_record;

#define ST_UP 0
#define ST_MAINT 1
#define ST_DOWN 2

/* ---- the requirement as a flat program over uint64 masks ---------------------------
 * Nodes in post-order; node i: kind (0 all, 1 any, 2 at_least), group mask, group size,
 * k, and its child nodes (indexes < i). The value of a node is "holds" for a mask of
 * failing components. Built by requirements.mask_program; the last node is the root. */

typedef struct {
    int kind;
    uint64_t group;
    int n;
    int k;
    int nkids;
    int *kids;
} Node;

typedef struct {
    int nnodes;
    Node *nodes;
    int *kidbuf;
} Program;

static void program_free(PyObject *capsule) {
    Program *p = (Program *)PyCapsule_GetPointer(capsule, "slawatch.program");
    if (p == NULL) return;
    PyMem_Free(p->nodes);
    PyMem_Free(p->kidbuf);
    PyMem_Free(p);
}

/* compile(nodes) -> capsule; nodes: list of (kind, group, n, k, (kid, ...)) */
static PyObject *compile_program(PyObject *self, PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "nodes must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n <= 0 || n > 100000) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "a program has 1..100000 nodes");
        return NULL;
    }
    Program *p = PyMem_Calloc(1, sizeof(Program));
    if (p == NULL) { Py_DECREF(seq); return PyErr_NoMemory(); }
    p->nodes = PyMem_Calloc((size_t)n, sizeof(Node));
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *node = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyTuple_Check(node) || PyTuple_GET_SIZE(node) != 5 || !PyTuple_Check(PyTuple_GET_ITEM(node, 4))) {
            PyErr_SetString(PyExc_TypeError, "a node is (kind, group, n, k, kids)");
            goto fail;
        }
        total += PyTuple_GET_SIZE(PyTuple_GET_ITEM(node, 4));
    }
    p->kidbuf = PyMem_Calloc((size_t)(total ? total : 1), sizeof(int));
    if (p->nodes == NULL || p->kidbuf == NULL) { PyErr_NoMemory(); goto fail; }
    p->nnodes = (int)n;
    int *kb = p->kidbuf;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *node = PySequence_Fast_GET_ITEM(seq, i);
        Node *nd = &p->nodes[i];
        nd->kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(node, 0));
        nd->group = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(node, 1));
        nd->n = (int)PyLong_AsLong(PyTuple_GET_ITEM(node, 2));
        nd->k = (int)PyLong_AsLong(PyTuple_GET_ITEM(node, 3));
        if (PyErr_Occurred()) goto fail;
        if (nd->kind < 0 || nd->kind > 2) {
            PyErr_SetString(PyExc_ValueError, "node kind must be 0, 1 or 2");
            goto fail;
        }
        PyObject *kids = PyTuple_GET_ITEM(node, 4);
        nd->nkids = (int)PyTuple_GET_SIZE(kids);
        nd->kids = kb;
        for (int j = 0; j < nd->nkids; j++) {
            long kid = PyLong_AsLong(PyTuple_GET_ITEM(kids, j));
            if (PyErr_Occurred()) goto fail;
            if (kid < 0 || kid >= i) {
                PyErr_SetString(PyExc_ValueError, "a node's children come before it");
                goto fail;
            }
            *kb++ = (int)kid;
        }
    }
    Py_DECREF(seq);
    return PyCapsule_New(p, "slawatch.program", program_free);
fail:
    Py_DECREF(seq);
    PyMem_Free(p->nodes);
    PyMem_Free(p->kidbuf);
    PyMem_Free(p);
    return NULL;
}

/* Values of every node for the failing mask f, into val (post-order: children first). */
static inline void run_program(const Program *p, uint64_t f, char *val) {
    for (int i = 0; i < p->nnodes; i++) {
        const Node *nd = &p->nodes[i];
        int v;
        if (nd->kind == 0) {  /* all */
            v = (nd->group & f) == 0;
            for (int j = 0; v && j < nd->nkids; j++) v = val[nd->kids[j]];
        } else if (nd->kind == 1) {  /* any */
            v = nd->n > 0 && (nd->group & f) != nd->group;
            for (int j = 0; !v && j < nd->nkids; j++) v = val[nd->kids[j]];
        } else {  /* at_least */
            int count = nd->n - __builtin_popcountll(nd->group & f);
            for (int j = 0; j < nd->nkids; j++) count += val[nd->kids[j]];
            v = count >= nd->k;
        }
        val[i] = (char)v;
    }
}

#define MAX_STACK_NODES 512

static int program_state(const Program *p, uint64_t d, uint64_t m) {
    char buf[MAX_STACK_NODES];
    char *val = p->nnodes <= MAX_STACK_NODES ? buf : PyMem_Malloc((size_t)p->nnodes);
    if (val == NULL) return -1;
    int st;
    run_program(p, d, val);
    if (!val[p->nnodes - 1]) {
        st = ST_DOWN;
    } else {
        run_program(p, m, val);
        st = val[p->nnodes - 1] ? ST_UP : ST_MAINT;
    }
    if (val != buf) PyMem_Free(val);
    return st;
}

/* The blamed bits for the down mask d (CONTRACT §4 attribution, as compile_masks'
 * blame): from the root, descend only into nodes that fail; the failing leaves of a
 * list are its down ones, group & d. Returns 0 and sets *err when out of memory. */
static uint64_t program_blame(const Program *p, uint64_t d, int *err) {
    char buf[MAX_STACK_NODES];
    int ibuf[MAX_STACK_NODES];
    int big = p->nnodes > MAX_STACK_NODES;
    char *val = big ? PyMem_Malloc((size_t)p->nnodes) : buf;
    int *stack = big ? PyMem_Malloc(sizeof(int) * (size_t)p->nnodes) : ibuf;
    uint64_t out = 0;
    *err = 0;
    if (val == NULL || stack == NULL) {
        *err = 1;
    } else {
        run_program(p, d, val);
        /* val: 1 holds, 0 fails, 2 failing and already pushed (so each node is pushed
         * once even if a program shared a node: the stack never outgrows nnodes) */
        int top = 0, root = p->nnodes - 1;
        if (!val[root]) { val[root] = 2; stack[top++] = root; }
        while (top > 0) {
            const Node *nd = &p->nodes[stack[--top]];
            out |= nd->group & d;
            for (int j = 0; j < nd->nkids; j++) {
                int kid = nd->kids[j];
                if (!val[kid]) { val[kid] = 2; stack[top++] = kid; }
            }
        }
    }
    if (big) { PyMem_Free(val); PyMem_Free(stack); }
    return out;
}

/* ---- helpers -------------------------------------------------------------------------- */

/* A __slots__ attribute read and written at its offset in the object, as the member
 * descriptor does, without the generic attribute lookup; any other type (a subclass,
 * a stand-in in a test) takes the generic path. */
typedef struct {
    PyTypeObject *type;
    Py_ssize_t off;
    PyObject *name;
} Slot;

static Slot TL_TS, TL_ST, TL_TAG, TL_GX, TL_TAGS, TL_SUMS, TL_VALID, CT_NEWEST, CT_HISTORY, CT_SINCE, CT_COMPONENT, SV_COMPONENTS, SV_DOWN, SV_BAD,
    SV_TIMELINE, SV_FRONTIER;

static int slot_name(Slot *s, const char *name) {
    s->type = NULL;
    s->off = 0;
    s->name = PyUnicode_InternFromString(name);
    return s->name == NULL ? -1 : 0;
}

/* Find the slot's offset in ``type``; left on the generic path if it is not a plain
 * writable slot. */
static int slot_init(Slot *s, PyObject *type) {
    PyObject *descr = PyObject_GetAttr(type, s->name);
    if (descr == NULL) return -1;
    s->type = NULL;
    if (Py_TYPE(descr) == &PyMemberDescr_Type) {
        PyMemberDef *def = ((PyMemberDescrObject *)descr)->d_member;
        if (def->type == T_OBJECT_EX && !(def->flags & READONLY)) {
            s->type = (PyTypeObject *)type;
            s->off = def->offset;
        }
    }
    Py_DECREF(descr);
    return 0;
}

static inline PyObject *slot_get(PyObject *obj, Slot *s) {
    if (Py_TYPE(obj) == s->type) {
        PyObject *v = *(PyObject **)((char *)obj + s->off);
        if (v != NULL) {
            Py_INCREF(v);
            return v;
        }
    }
    return PyObject_GetAttr(obj, s->name);
}

static inline int slot_set(PyObject *obj, Slot *s, PyObject *value) {
    if (Py_TYPE(obj) == s->type) {
        PyObject **p = (PyObject **)((char *)obj + s->off);
        PyObject *old = *p;
        Py_INCREF(value);
        *p = value;
        Py_XDECREF(old);
        return 0;
    }
    return PyObject_SetAttr(obj, s->name, value);
}

static inline PyObject *list_slot(PyObject *obj, Slot *s) {
    PyObject *v = slot_get(obj, s);
    if (v != NULL && !PyList_CheckExact(v)) {
        PyErr_Format(PyExc_TypeError, "%U must be a list", s->name);
        Py_DECREF(v);
        return NULL;
    }
    return v;
}

static inline PyObject *last_item(PyObject *list) {
    Py_ssize_t n = PyList_GET_SIZE(list);
    return n ? PyList_GET_ITEM(list, n - 1) : NULL;
}

/* ---- timeline columns: array('d') of times, array('b') of states ----------------------- */

/* CPython's array object (Modules/arraymodule.c, the same from 3.x to 3.13), read and
 * appended to in place on the hot paths: array.append parses its argument with
 * PyArg_Parse and the buffer protocol costs two calls a read, a third of the engine's
 * time at services of 10. setup() checks this layout against the buffer protocol on
 * live arrays and leaves ``array_fast`` 0 (the generic calls) if anything differs; an
 * append that would grow the array, or to an array with a buffer exported, takes the
 * generic call too. */
typedef struct {
    PyObject_VAR_HEAD
    char *ob_item;
    Py_ssize_t allocated;
    const char *ob_descr;  /* struct arraydescr, whose first member is the typecode */
    PyObject *weakreflist;
    Py_ssize_t ob_exports;
} ArrayObj;
static int array_fast = 0;
static int array_fast_checked = 0;  /* what check_array_layout found */

static inline int arr_is(PyObject *col, char code) {
    return array_fast && Py_TYPE(col) == Array_type && *((ArrayObj *)col)->ob_descr == code;
}

/* The column in slot ``s`` of ``obj`` (a new reference), checked to be an array. */
static inline PyObject *col_slot(PyObject *obj, Slot *s) {
    PyObject *v = slot_get(obj, s);
    if (v != NULL && Py_TYPE(v) != Array_type) {
        PyErr_Format(PyExc_TypeError, "%U must be an array.array", s->name);
        Py_DECREF(v);
        return NULL;
    }
    return v;
}

/* A read-only view of a column whose items are ``fmt`` ('d' or 'b'); release it with
 * PyBuffer_Release before the column can grow. */
static int col_view(PyObject *col, Py_buffer *v, char fmt) {
    if (PyObject_GetBuffer(col, v, PyBUF_FORMAT) < 0) return -1;
    if (v->format == NULL || v->format[0] != fmt || v->format[1] != 0) {
        PyBuffer_Release(v);
        PyErr_Format(PyExc_TypeError, "a timeline column must be array('%c')", fmt);
        return -1;
    }
    return 0;
}

/* The last time of a column into *out: 1, 0 if it is empty, -1 on error. */
static int dcol_last(PyObject *col, double *out) {
    if (arr_is(col, 'd')) {
        Py_ssize_t n = Py_SIZE(col);
        if (n) *out = ((const double *)((ArrayObj *)col)->ob_item)[n - 1];
        return n ? 1 : 0;
    }
    Py_buffer v;
    if (col_view(col, &v, 'd') < 0) return -1;
    Py_ssize_t n = v.len / (Py_ssize_t)sizeof(double);
    if (n) *out = ((const double *)v.buf)[n - 1];
    PyBuffer_Release(&v);
    return n ? 1 : 0;
}

/* The last state of a column into *out: 1, 0 if it is empty, -1 on error. */
static int bcol_last(PyObject *col, int *out) {
    if (arr_is(col, 'b')) {
        Py_ssize_t n = Py_SIZE(col);
        if (n) *out = ((const signed char *)((ArrayObj *)col)->ob_item)[n - 1];
        return n ? 1 : 0;
    }
    Py_buffer v;
    if (col_view(col, &v, 'b') < 0) return -1;
    Py_ssize_t n = v.len;
    if (n) *out = ((const signed char *)v.buf)[n - 1];
    PyBuffer_Release(&v);
    return n ? 1 : 0;
}

/* The last tag index of a column into *out: 1, 0 if it is empty, -1 on error. */
static int icol_last(PyObject *col, unsigned int *out) {
    if (arr_is(col, 'I')) {
        Py_ssize_t n = Py_SIZE(col);
        if (n) *out = ((const unsigned int *)((ArrayObj *)col)->ob_item)[n - 1];
        return n ? 1 : 0;
    }
    Py_buffer v;
    if (col_view(col, &v, 'I') < 0) return -1;
    Py_ssize_t n = v.len / (Py_ssize_t)sizeof(unsigned int);
    if (n) *out = ((const unsigned int *)v.buf)[n - 1];
    PyBuffer_Release(&v);
    return n ? 1 : 0;
}

/* The index of ``tag`` in the timeline's table (a new reference to an int), added if
 * new; the int 0 for NO_TAG. */
static PyObject *tag_index(PyObject *tl, PyObject *tag) {
    if (tag == NO_TAG || (PyTuple_CheckExact(tag) && PyTuple_GET_SIZE(tag) == 0)) {
        Py_INCREF(STATE_INT[0]);
        return STATE_INT[0];
    }
    PyObject *gx = slot_get(tl, &TL_GX);
    if (gx == NULL) return NULL;
    if (gx == NO_TAG_INDEX || !PyDict_CheckExact(gx)) {  /* the shared table: intern copies it */
        Py_DECREF(gx);
        return PyObject_CallMethodOneArg(tl, s_intern, tag);
    }
    PyObject *tags = slot_get(tl, &TL_TAGS);
    if (tags == NULL) { Py_DECREF(gx); return NULL; }
    if (!PyList_CheckExact(tags)) {
        Py_DECREF(gx); Py_DECREF(tags);
        return PyObject_CallMethodOneArg(tl, s_intern, tag);
    }
    /* known: its index (no int made); new: the next index, added */
    PyObject *ix = PyDict_GetItemWithError(gx, tag);  /* borrowed */
    if (ix != NULL) {
        Py_INCREF(ix);
    } else if (!PyErr_Occurred()) {
        ix = PyLong_FromSsize_t(PyList_GET_SIZE(tags));
        if (ix != NULL && (PyDict_SetItem(gx, tag, ix) < 0 || PyList_Append(tags, tag) < 0)) {
            if (PyDict_GetItemWithError(gx, tag) != NULL) PyDict_DelItem(gx, tag);
            Py_CLEAR(ix);
        }
    }
    Py_DECREF(gx);
    Py_DECREF(tags);
    return ix;
}

/* Room for one more item in an array with no buffer exported, grown as the array
 * module's own array_resize grows it (the same sizes, so the same memory), with
 * PyMem_Realloc as it does (arraymodule.c allocates ob_item with PyMem_ in 3.8-3.13):
 * array.append parses its argument with PyArg_Parse, which cost more than the append
 * at small timelines, whose arrays are full every few items. 0, or -1 with MemoryError. */
#if PY_VERSION_HEX < 0x030E0000
#define ARR_GROW 1
#else
#define ARR_GROW 0  /* an array module not checked against: its own append grows it */
#endif
static int arr_room(ArrayObj *a, Py_ssize_t itemsize) {
    Py_ssize_t n = Py_SIZE(a);
    if (n < a->allocated) return 0;
    size_t want = (size_t)((n + 1) >> 4) + (n < 8 ? 3 : 7) + (size_t)(n + 1);
    if (want > (size_t)PY_SSIZE_T_MAX / (size_t)itemsize) { PyErr_NoMemory(); return -1; }
    char *items = PyMem_Realloc(a->ob_item, want * (size_t)itemsize);
    if (items == NULL) { PyErr_NoMemory(); return -1; }
    a->ob_item = items;
    a->allocated = (Py_ssize_t)want;
    return 0;
}

/* ``size`` bytes at ``value`` as one more item of ``col``, an array of typecode ``code``,
 * written in place (grown as array.append grows it) when that may be done: 1 written,
 * 0 not (not such an array, its buffer exported, or full without ARR_GROW: the caller
 * appends through array.append), -1 error. The one fast path of every append below. */
static inline int arr_put(PyObject *col, char code, const void *value, Py_ssize_t size) {
    if (!arr_is(col, code)) return 0;
    ArrayObj *a = (ArrayObj *)col;
    Py_ssize_t n = Py_SIZE(a);
    if (a->ob_exports != 0 || (n >= a->allocated && !ARR_GROW)) return 0;
    if (arr_room(a, size) < 0) return -1;
    memcpy(a->ob_item + n * size, value, (size_t)size);
    Py_SET_SIZE(a, n + 1);
    return 1;
}

/* ``value`` appended to ``col`` through array.append (a new reference is stolen). */
static int arr_append_obj(PyObject *col, PyObject *value) {
    if (value == NULL) return -1;
    PyObject *argv[2] = {col, value};
    PyObject *r = PyObject_Vectorcall(Array_append, argv, 2, NULL);
    Py_DECREF(value);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

static inline int col_append(PyObject *col, PyObject *value) {
    if (array_fast && Py_TYPE(col) == Array_type) {
        char code = *((ArrayObj *)col)->ob_descr;
        int done = 0;
        if (code == 'd' && PyFloat_CheckExact(value)) {
            double x = PyFloat_AS_DOUBLE(value);
            done = arr_put(col, 'd', &x, (Py_ssize_t)sizeof x);
        } else if ((code == 'b' || code == 'I') && PyLong_CheckExact(value)) {
            long v = PyLong_AsLong(value);
            if (v == -1 && PyErr_Occurred()) {
                PyErr_Clear();  /* the generic call says why */
            } else if (code == 'b' && v >= -128 && v <= 127) {
                signed char c = (signed char)v;
                done = arr_put(col, 'b', &c, 1);
            } else if (code == 'I' && v >= 0 && (unsigned long)v <= 0xffffffffUL) {
                unsigned int u = (unsigned int)v;
                done = arr_put(col, 'I', &u, (Py_ssize_t)sizeof u);
            }
        }
        if (done) return done < 0 ? -1 : 0;
    }
    Py_INCREF(value);
    return arr_append_obj(col, value);
}

/* Append a point (time, state, tag index) to a timeline's three columns. */
static int append_point(PyObject *ts, PyObject *t, PyObject *st, PyObject *s, PyObject *tags, PyObject *tag) {
    if (col_append(ts, t) < 0 || col_append(st, s) < 0 || col_append(tags, tag) < 0) return -1;
    return 0;
}

/* A state as a C int: small ints 0..2 (a State is an IntEnum: a PyLong subclass). */
static inline int as_state(PyObject *o) {
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < 0 || v > 2) {
        PyErr_Format(PyExc_ValueError, "state %ld is not 0, 1 or 2", v);
        return -1;
    }
    return (int)v;
}

/* ---- stage 1: the in-order path of batch.apply_columns -------------------------------- */

static PyObject *new_tracker_obj(PyObject *cls, PyObject *comp);

/* apply_in_order(trackers, comps, states, tss, i, services_for, lateness, fanout,
 *                others, tracker_cls, compact_every[, created]) -> (next index, accepted)
 *
 * From event i on, applies every event that is unmapped (listed in ``others``) or in
 * order for its component (ts after its newest), exactly as apply_columns' inlined
 * fast path does; returns at the first other event (for the caller's Python path) or
 * at the end. A tracker it makes is added to ``trackers`` and, given a list
 * ``created``, its component appended there. */
static PyObject *apply_in_order(PyObject *self, PyObject *args) {
    PyObject *trackers, *comps, *states, *tss, *services_for, *fanout, *others, *tracker_cls;
    PyObject *created = Py_None;
    Py_ssize_t i;
    double lateness;
    long compact_every;
    if (!PyArg_ParseTuple(args, "O!O!O!O!nO!dO!O!Ol|O", &PyDict_Type, &trackers, &PyList_Type, &comps,
                          &PyList_Type, &states, &PyList_Type, &tss, &i, &PyDict_Type, &services_for,
                          &lateness, &PyDict_Type, &fanout, &PyList_Type, &others, &tracker_cls,
                          &compact_every, &created))
        return NULL;
    if (created != Py_None && !PyList_Check(created)) {
        PyErr_SetString(PyExc_TypeError, "created must be a list or None");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(comps);
    if (PyList_GET_SIZE(states) != n || PyList_GET_SIZE(tss) != n) {
        PyErr_SetString(PyExc_ValueError, "columns of different lengths");
        return NULL;
    }
    Py_ssize_t accepted = 0;
    for (; i < n; i++) {
        PyObject *comp = PyList_GET_ITEM(comps, i);
        PyObject *st_obj = PyList_GET_ITEM(states, i);
        PyObject *ts_obj = PyList_GET_ITEM(tss, i);
        PyObject *services = PyDict_GetItemWithError(services_for, comp);  /* borrowed: the
            catalog's tuple, which nothing called from here replaces */
        if (services == NULL && PyErr_Occurred()) return NULL;
        if (services == NULL || !PyObject_IsTrue(services)) {
            PyObject *pair = Py_BuildValue("(nO)", i, UNMAPPED);
            if (pair == NULL || PyList_Append(others, pair) < 0) { Py_XDECREF(pair); return NULL; }
            Py_DECREF(pair);
            continue;
        }
        PyObject *tracker = PyDict_GetItemWithError(trackers, comp);  /* borrowed */
        if (tracker == NULL) {
            if (PyErr_Occurred()) return NULL;
            tracker = new_tracker_obj(tracker_cls, comp);
            if (tracker == NULL) return NULL;
            int r = PyDict_SetItem(trackers, comp, tracker);
            Py_DECREF(tracker);  /* the dict holds it */
            if (r < 0 || (created != Py_None && PyList_Append(created, comp) < 0)) return NULL;
        }
        double ts = PyFloat_AsDouble(ts_obj);
        if (ts == -1.0 && PyErr_Occurred()) return NULL;
        PyObject *newest_obj = slot_get(tracker, &CT_NEWEST);
        if (newest_obj == NULL) return NULL;
        double newest = PyFloat_AsDouble(newest_obj);
        Py_DECREF(newest_obj);
        if (newest == -1.0 && PyErr_Occurred()) return NULL;
        if (!(ts > newest)) break;  /* not in order: the caller's path */
        int st = as_state(st_obj);
        if (st < 0) return NULL;
        PyObject *h = slot_get(tracker, &CT_HISTORY);
        if (h == NULL) return NULL;
        PyObject *hts = col_slot(h, &TL_TS), *hst = NULL, *htag = NULL;
        if (hts != NULL) hst = col_slot(h, &TL_ST);
        if (hst != NULL) htag = col_slot(h, &TL_TAG);
        Py_DECREF(h);
        if (htag == NULL) { Py_XDECREF(hts); Py_XDECREF(hst); return NULL; }
        int old = ST_UP;
        if (bcol_last(hst, &old) < 0) { Py_DECREF(hts); Py_DECREF(hst); Py_DECREF(htag); return NULL; }
        int rc = append_point(hts, ts_obj, hst, STATE_INT[st], htag, STATE_INT[0]);
        Py_DECREF(hts); Py_DECREF(hst); Py_DECREF(htag);
        if (rc < 0) return NULL;
        if (slot_set(tracker, &CT_NEWEST, ts_obj) < 0) return NULL;
        PyObject *since = slot_get(tracker, &CT_SINCE);
        if (since == NULL) return NULL;
        long count = PyLong_AsLong(since) + 1;
        Py_DECREF(since);
        if (count == 0 && PyErr_Occurred()) return NULL;
        if (count >= compact_every) {
            PyObject *zero = PyLong_FromLong(0);
            rc = slot_set(tracker, &CT_SINCE, zero);
            Py_DECREF(zero);
            if (rc < 0) return NULL;
            PyObject *horizon = PyFloat_FromDouble(ts - lateness);
            if (horizon == NULL) return NULL;
            PyObject *res = PyObject_CallMethodOneArg(tracker, s_compact, horizon);
            Py_DECREF(horizon);
            if (res == NULL) return NULL;
            Py_DECREF(res);
        } else {
            PyObject *cnt = PyLong_FromLong(count);
            if (cnt == NULL) return NULL;
            rc = slot_set(tracker, &CT_SINCE, cnt);
            Py_DECREF(cnt);
            if (rc < 0) return NULL;
        }
        accepted++;
        if (old == st) continue;
        PyObject *seg = PyTuple_Pack(4, comp, ts_obj, INF_obj, st_obj);
        if (seg == NULL) return NULL;
        /* A string, two floats and a state: no cycle can pass through it, and a storm
         * makes one per changing event, which the young collections walked. */
        PyObject_GC_UnTrack(seg);
        /* services: a tuple of names (catalog._services_for) */
        PyObject *svcs = PySequence_Fast(services, "services must be a sequence");
        if (svcs == NULL) { Py_DECREF(seg); return NULL; }
        Py_ssize_t ns = PySequence_Fast_GET_SIZE(svcs);
        for (Py_ssize_t j = 0; j < ns; j++) {
            PyObject *svc = PySequence_Fast_GET_ITEM(svcs, j);
            PyObject *lst = PyDict_GetItemWithError(fanout, svc);
            if (lst == NULL) {
                if (PyErr_Occurred()) { Py_DECREF(svcs); Py_DECREF(seg); return NULL; }
                lst = PyList_New(1);
                if (lst == NULL) { Py_DECREF(svcs); Py_DECREF(seg); return NULL; }
                Py_INCREF(seg);
                PyList_SET_ITEM(lst, 0, seg);
                rc = PyDict_SetItem(fanout, svc, lst);
                Py_DECREF(lst);
            } else {
                rc = PyList_Append(lst, seg);
            }
            if (rc < 0) { Py_DECREF(svcs); Py_DECREF(seg); return NULL; }
        }
        Py_DECREF(svcs);
        Py_DECREF(seg);
    }
    return Py_BuildValue("(nn)", i, accepted);
}

/* ---- Timeline() without its __init__ ---------------------------------------------------
 * new_timeline() -> Timeline: what ``Timeline()`` makes, made here. Why: a storm's first
 * touch makes a timeline per component and per service copy (64,000 at 20,000
 * components), and ``Timeline.__init__`` (a dozen slot stores and three empty columns
 * in Python) took ~3,900 instructions each, ~9% of both stages there. One source of
 * truth: the first call makes a ``Timeline()`` as a template and reads its slots; a new
 * timeline shares every value of the template but its columns (the arrays), which are
 * new empty copies, and is off the collector's lists with them, as __init__ leaves it.
 * Anything unexpected in the template (a slot left unset, more slots than kept here, a
 * __dict__) and every call is ``Timeline()`` itself. */
#define TL_SLOTS_MAX 32
static int tl_state = 0;  /* 0 not looked at, 1 ready, -1 call the class */
static Py_ssize_t tl_off[TL_SLOTS_MAX];
static PyObject *tl_val[TL_SLOTS_MAX];   /* shared value, or NULL: a column, copied */
static PyObject *tl_copy[TL_SLOTS_MAX];  /* the template column's bound __copy__ */
static int tl_n = 0;

/* The object slots of ``one`` and ``two``, two instances of ``type`` made as templates
 * (new_timeline, new_tracker): for each member its offset and both values (borrowed),
 * into ``off``, ``v`` and ``w``; the count, or -1 when the type or an instance is not
 * plain (a __dict__, a base other than object, an instance of another type, a member
 * that is not a writable object slot, a slot left unset, more than TL_SLOTS_MAX): then
 * the class is called instead. */
static int template_slots(PyTypeObject *type, PyObject *one, PyObject *two, Py_ssize_t *off,
                          PyObject **v, PyObject **w) {
    if (type->tp_members == NULL || type->tp_dictoffset != 0 || type->tp_base != &PyBaseObject_Type
            || Py_TYPE(one) != type || Py_TYPE(two) != type)
        return -1;
    int n = 0;
    for (PyMemberDef *m = type->tp_members; m->name != NULL; m++, n++) {
        if (m->type != T_OBJECT_EX || (m->flags & READONLY) || n == TL_SLOTS_MAX) return -1;
        off[n] = m->offset;
        v[n] = *(PyObject **)((char *)one + m->offset);
        w[n] = *(PyObject **)((char *)two + m->offset);
        if (v[n] == NULL || w[n] == NULL) return -1;
    }
    return n;
}

static int tl_prepare(void) {
    tl_state = -1;
    for (int i = 0; i < tl_n; i++) { Py_CLEAR(tl_val[i]); Py_CLEAR(tl_copy[i]); }
    tl_n = 0;
    if (Timeline_cls == NULL || !PyType_Check(Timeline_cls) || Array_type == NULL) return 0;
    /* Two of them: a value both hold is shared by every timeline; one each holds its own,
     * which must be an empty array (a column) to be made here. */
    PyObject *one = PyObject_CallNoArgs(Timeline_cls);
    PyObject *two = one ? PyObject_CallNoArgs(Timeline_cls) : NULL;
    if (two == NULL) { Py_XDECREF(one); return -1; }
    PyObject *v[TL_SLOTS_MAX], *w[TL_SLOTS_MAX];
    int n = template_slots((PyTypeObject *)Timeline_cls, one, two, tl_off, v, w);
    int ok = n >= 0, rc = 0;
    for (int i = 0; i < n; i++) tl_val[i] = tl_copy[i] = NULL;
    for (int i = 0; ok && i < n; i++) {
        if (v[i] == w[i]) {
            tl_val[i] = Py_NewRef(v[i]);
        } else if (Py_TYPE(v[i]) == Array_type && PyObject_Length(v[i]) == 0) {
            tl_copy[i] = PyObject_GetAttrString(v[i], "__copy__");
            if (tl_copy[i] == NULL) { rc = -1; ok = 0; }
        } else {
            ok = 0;
        }
    }
    Py_DECREF(one);
    Py_DECREF(two);
    tl_n = n > 0 ? n : 0;
    if (ok) tl_state = 1;
    return rc;
}

/* A new reference to a new empty Timeline, or NULL with an exception. */
static PyObject *new_timeline_obj(void) {
    if (tl_state == 0 && tl_prepare() < 0) return NULL;
    if (tl_state != 1) return PyObject_CallNoArgs(Timeline_cls);
    PyTypeObject *type = (PyTypeObject *)Timeline_cls;
    PyObject *tl = type->tp_alloc(type, 0);
    if (tl == NULL) return NULL;
    for (int i = 0; i < tl_n; i++) {
        PyObject *v;
        if (tl_val[i] != NULL) {
            v = Py_NewRef(tl_val[i]);
        } else {
            v = PyObject_CallNoArgs(tl_copy[i]);
            if (v == NULL) { Py_DECREF(tl); return NULL; }
            if (PyObject_GC_IsTracked(v)) PyObject_GC_UnTrack(v);
        }
        *(PyObject **)((char *)tl + tl_off[i]) = v;
    }
    if (PyObject_GC_IsTracked(tl)) PyObject_GC_UnTrack(tl);
    return tl;
}

static PyObject *new_timeline(PyObject *self, PyObject *noargs) {
    return new_timeline_obj();
}

/* ---- ComponentTracker(comp) without its __init__ ---------------------------------------
 * What the class registered as "component" makes, made here for stage 1's loop, which
 * makes a tracker at each component's first event (20,000 in the first fetches at
 * 20,000 components; ``__init__`` in Python cost ~3,900 instructions each). One source
 * of truth, as new_timeline: the first call makes two trackers of the class and reads
 * their slots: the one that holds the argument takes the component, a timeline each
 * holds its own is a new one (new_timeline_obj), a value both hold (the same object, or
 * equal floats or ints) is shared; anything else, and every call is the class itself.
 * Left off the collector's lists when the templates were. */
static int ct_state = 0;  /* 0 not looked at, 1 ready, -1 call the class */
static PyObject *ct_cls = NULL;  /* the class the template was read from (borrowed) */
static Py_ssize_t ct_off[TL_SLOTS_MAX];
static PyObject *ct_val[TL_SLOTS_MAX];  /* shared value, or NULL: see ct_kind */
static char ct_kind[TL_SLOTS_MAX];      /* 'v' shared, 'c' the component, 't' a timeline */
static int ct_n = 0, ct_untracked = 0;

static int ct_same_value(PyObject *v, PyObject *w) {
    if (v == w) return 1;
    if (PyFloat_CheckExact(v) && PyFloat_CheckExact(w))
        return PyFloat_AS_DOUBLE(v) == PyFloat_AS_DOUBLE(w);
    if (PyLong_CheckExact(v) && PyLong_CheckExact(w)) {
        int r = PyObject_RichCompareBool(v, w, Py_EQ);
        if (r < 0) PyErr_Clear();
        return r == 1;
    }
    return 0;
}

static int ct_prepare(PyObject *cls) {
    ct_state = -1;
    for (int i = 0; i < ct_n; i++) Py_CLEAR(ct_val[i]);
    ct_n = 0;
    ct_cls = cls;
    if (!PyType_Check(cls) || Timeline_cls == NULL) return 0;
    PyObject *a = PyUnicode_FromString("template a"), *b = PyUnicode_FromString("template b");
    PyObject *one = a && b ? PyObject_CallOneArg(cls, a) : NULL;
    PyObject *two = one ? PyObject_CallOneArg(cls, b) : NULL;
    if (two == NULL) { Py_XDECREF(a); Py_XDECREF(b); Py_XDECREF(one); return -1; }
    PyObject *v[TL_SLOTS_MAX], *w[TL_SLOTS_MAX];
    int n = template_slots((PyTypeObject *)cls, one, two, ct_off, v, w);
    int ok = n >= 0, named = 0;
    for (int i = 0; i < n; i++) ct_val[i] = NULL;
    for (int i = 0; ok && i < n; i++) {
        if (v[i] == a && w[i] == b) {
            ct_kind[i] = 'c';
            named++;
        } else if ((PyObject *)Py_TYPE(v[i]) == Timeline_cls
                   && (PyObject *)Py_TYPE(w[i]) == Timeline_cls && v[i] != w[i]) {
            ct_kind[i] = 't';
        } else if (ct_same_value(v[i], w[i])) {
            ct_kind[i] = 'v';
            ct_val[i] = Py_NewRef(v[i]);
        } else {
            ok = 0;
        }
    }
    ct_untracked = !PyObject_GC_IsTracked(one) && !PyObject_GC_IsTracked(two);
    Py_DECREF(one); Py_DECREF(two); Py_DECREF(a); Py_DECREF(b);
    ct_n = n > 0 ? n : 0;
    if (ok && named == 1) ct_state = 1;
    return 0;
}

/* A new reference to ``cls(comp)``, or NULL with an exception. */
static PyObject *new_tracker_obj(PyObject *cls, PyObject *comp) {
    if (cls != ct_cls || ct_state == 0) {
        if ((PyTypeObject *)cls != CT_NEWEST.type) return PyObject_CallOneArg(cls, comp);
        if (ct_prepare(cls) < 0) return NULL;
    }
    if (ct_state != 1 || !PyUnicode_CheckExact(comp)) return PyObject_CallOneArg(cls, comp);
    PyTypeObject *type = (PyTypeObject *)cls;
    PyObject *obj = type->tp_alloc(type, 0);
    if (obj == NULL) return NULL;
    for (int i = 0; i < ct_n; i++) {
        PyObject *v = ct_kind[i] == 'c' ? Py_NewRef(comp)
                      : ct_kind[i] == 't' ? new_timeline_obj() : Py_NewRef(ct_val[i]);
        if (v == NULL) { Py_DECREF(obj); return NULL; }
        *(PyObject **)((char *)obj + ct_off[i]) = v;
    }
    if (ct_untracked && PyObject_GC_IsTracked(obj)) PyObject_GC_UnTrack(obj);
    return obj;
}

static PyObject *new_tracker(PyObject *self, PyObject *args) {
    PyObject *cls, *comp;
    if (!PyArg_ParseTuple(args, "OO", &cls, &comp)) return NULL;
    return new_tracker_obj(cls, comp);
}

/* ---- stage 2: ServiceTracker.apply_many ----------------------------------------------- */

/* What apply_many needs of a ServiceModel, gathered once per model (model.plan): the
 * requirement's program when it has at most 64 components, its bits, the blame memo,
 * its Python state function (for larger models) and the all-up state. Holds no
 * reference to the model itself. */
typedef struct {
    Program *prog;  /* NULL: call state_mask */
    PyObject *bits, *cache, *state_mask;
    PyObject *names;         /* the model's mask_names (bit i is names[i]), or NULL */
    Py_ssize_t cache_max;    /* the memo's bound */
    long up_state;
    int small;      /* at most 64 bits: masks are uint64 */
    /* With a program and names, the blame memo is this table keyed by the down mask
     * itself (tag NULL: empty slot), not ``cache``: a Python int made and a dict probed
     * per down state were half the cost of a blame in a storm, where most masks are new.
     * At most cache_max tags, as the dict. */
    uint64_t *memo_d;
    PyObject **memo_tag;
    Py_ssize_t memo_cap, memo_n;
} Plan;

static void plan_memo_free(Plan *p) {
    for (Py_ssize_t i = 0; i < p->memo_cap; i++) Py_XDECREF(p->memo_tag[i]);
    PyMem_Free(p->memo_d);
    PyMem_Free(p->memo_tag);
    p->memo_d = NULL;
    p->memo_tag = NULL;
    p->memo_cap = p->memo_n = 0;
}

static void plan_free(PyObject *capsule) {
    Plan *p = (Plan *)PyCapsule_GetPointer(capsule, "slawatch.plan");
    if (p == NULL) return;
    if (p->prog != NULL) {
        PyMem_Free(p->prog->nodes);
        PyMem_Free(p->prog->kidbuf);
        PyMem_Free(p->prog);
    }
    Py_XDECREF(p->bits);
    Py_XDECREF(p->cache);
    Py_XDECREF(p->state_mask);
    Py_XDECREF(p->names);
    plan_memo_free(p);
    PyMem_Free(p);
}

/* compile_plan(nodes or None, bits, blame_cache, state_mask, up_state[, names, cache_max])
 * -> capsule. With the names, a blame the memo does not hold is computed from the
 * program (at most 64 components) instead of calling model.blame_mask. */
static PyObject *compile_plan(PyObject *self, PyObject *args) {
    PyObject *nodes, *bits, *cache, *state_mask, *names = NULL;
    long up_state;
    Py_ssize_t cache_max = 0;
    if (!PyArg_ParseTuple(args, "OO!O!Ol|O!n", &nodes, &PyDict_Type, &bits, &PyDict_Type, &cache,
                          &state_mask, &up_state, &PyTuple_Type, &names, &cache_max))
        return NULL;
    if (names != NULL && PyTuple_GET_SIZE(names) != PyDict_GET_SIZE(bits)) {
        PyErr_SetString(PyExc_ValueError, "names must name every bit");
        return NULL;
    }
    if (up_state < 0 || up_state > 2) {
        PyErr_Format(PyExc_ValueError, "up_state %ld is not 0, 1 or 2", up_state);
        return NULL;
    }
    Plan *p = PyMem_Calloc(1, sizeof(Plan));
    if (p == NULL) return PyErr_NoMemory();
    p->small = PyDict_GET_SIZE(bits) <= 64;
    if (nodes != Py_None) {
        if (!p->small) {
            PyMem_Free(p);
            PyErr_SetString(PyExc_ValueError, "a program reads at most 64 components");
            return NULL;
        }
        PyObject *cap = compile_program(NULL, nodes);
        if (cap == NULL) { PyMem_Free(p); return NULL; }
        /* take the program out of its capsule */
        p->prog = PyCapsule_GetPointer(cap, "slawatch.program");
        PyCapsule_SetDestructor(cap, NULL);
        Py_DECREF(cap);
    }
    Py_INCREF(bits); p->bits = bits;
    Py_INCREF(cache); p->cache = cache;
    Py_INCREF(state_mask); p->state_mask = state_mask;
    if (p->prog != NULL && names != NULL) { Py_INCREF(names); p->names = names; }
    p->cache_max = cache_max;
    p->up_state = up_state;
    PyObject *cap = PyCapsule_New(p, "slawatch.plan", plan_free);
    if (cap == NULL) {
        if (p->prog != NULL) { PyMem_Free(p->prog->nodes); PyMem_Free(p->prog->kidbuf); PyMem_Free(p->prog); }
        Py_DECREF(bits); Py_DECREF(cache); Py_DECREF(state_mask); Py_XDECREF(p->names);
        PyMem_Free(p);
    }
    return cap;
}

typedef struct {
    int small;
    uint64_t d, m;    /* small */
    PyObject *D, *M;  /* owned, when !small */
} Masks;

static inline PyObject *mask_obj(Masks *k, int which) {
    if (k->small) return PyLong_FromUnsignedLongLong(which ? k->m : k->d);
    PyObject *o = which ? k->M : k->D;
    Py_INCREF(o);
    return o;
}

/* Set the component's bit in the masks for its new state. */
static int set_bit(Masks *k, PyObject *bit, int state) {
    if (k->small) {
        uint64_t b = PyLong_AsUnsignedLongLong(bit);
        if (b == (uint64_t)-1 && PyErr_Occurred()) return -1;
        if (state == ST_DOWN) { k->d |= b; k->m |= b; }
        else if (state) { k->d &= ~b; k->m |= b; }
        else { k->d &= ~b; k->m &= ~b; }
        return 0;
    }
    PyObject *nb = PyNumber_Invert(bit);
    if (nb == NULL) return -1;
    PyObject *nd = state == ST_DOWN ? PyNumber_Or(k->D, bit) : PyNumber_And(k->D, nb);
    PyObject *nm = state ? PyNumber_Or(k->M, bit) : PyNumber_And(k->M, nb);
    Py_DECREF(nb);
    if (nd == NULL || nm == NULL) { Py_XDECREF(nd); Py_XDECREF(nm); return -1; }
    Py_SETREF(k->D, nd);
    Py_SETREF(k->M, nm);
    return 0;
}

/* The service state from the masks; -1 on error. */
static int eval_state(Masks *k, const Plan *plan) {
    if (k->small ? k->m == 0 : !PyObject_IsTrue(k->M)) return (int)plan->up_state;
    if (k->small && plan->prog != NULL) {
        int st = program_state(plan->prog, k->d, k->m);
        if (st < 0) PyErr_NoMemory();
        return st;
    }
    PyObject *d = mask_obj(k, 0), *m = mask_obj(k, 1);
    if (d == NULL || m == NULL) { Py_XDECREF(d); Py_XDECREF(m); return -1; }
    PyObject *argv[2] = {d, m};
    PyObject *r = PyObject_Vectorcall(plan->state_mask, argv, 2, NULL);
    Py_DECREF(d); Py_DECREF(m);
    if (r == NULL) return -1;
    int st = as_state(r);
    Py_DECREF(r);
    return st;
}

/* The sorted tuple of the names blamed for the down mask (plan with names only). */
static PyObject *plan_blame_tag(const Plan *plan, uint64_t d) {
    int err;
    uint64_t b = program_blame(plan->prog, d, &err);
    if (err) return PyErr_NoMemory();
    PyObject *tag = PyTuple_New(__builtin_popcountll(b));
    if (tag == NULL) return NULL;
    Py_ssize_t n = 0;
    while (b) {
        int i = __builtin_ctzll(b);
        PyObject *name = PyTuple_GET_ITEM(plan->names, i);
        Py_INCREF(name);
        PyTuple_SET_ITEM(tag, n++, name);
        b &= b - 1;
    }
    /* Off the collector's lists: it holds only strings (no cycle can pass through it),
     * and tags live as long as their memo and tag tables: in a storm most down sets are
     * new, and every collection walked the tuples kept. */
    PyObject_GC_UnTrack(tag);
    return tag;
}

static inline size_t memo_slot(uint64_t d, Py_ssize_t cap) {
    return (size_t)((d * 0x9E3779B97F4A7C15ULL) >> 32) & (size_t)(cap - 1);
}

/* The plan's memo of ``tag`` for ``d`` (``tag`` new; kept only while the memo has
 * room): 0, or -1 with an exception. */
static int plan_memo_put(Plan *p, uint64_t d, PyObject *tag) {
    if (p->memo_n >= p->cache_max) return 0;
    if (2 * (p->memo_n + 1) > p->memo_cap) {  /* grow to keep probes short */
        Py_ssize_t cap = p->memo_cap ? p->memo_cap * 2 : 64;
        uint64_t *keys = PyMem_Calloc((size_t)cap, sizeof(uint64_t));
        PyObject **tags = PyMem_Calloc((size_t)cap, sizeof(PyObject *));
        if (keys == NULL || tags == NULL) {
            PyMem_Free(keys);
            PyMem_Free(tags);
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t j = 0; j < p->memo_cap; j++) {
            if (p->memo_tag[j] == NULL) continue;
            size_t i = memo_slot(p->memo_d[j], cap);
            while (tags[i] != NULL) i = (i + 1) & (size_t)(cap - 1);
            keys[i] = p->memo_d[j];
            tags[i] = p->memo_tag[j];
        }
        PyMem_Free(p->memo_d);
        PyMem_Free(p->memo_tag);
        p->memo_d = keys;
        p->memo_tag = tags;
        p->memo_cap = cap;
    }
    size_t i = memo_slot(d, p->memo_cap);
    while (p->memo_tag[i] != NULL) i = (i + 1) & (size_t)(p->memo_cap - 1);
    Py_INCREF(tag);
    p->memo_d[i] = d;
    p->memo_tag[i] = tag;
    p->memo_n++;
    return 0;
}

/* The blame tag for the down mask: the model's memo, else from the program, else
 * model.blame_mask(d). */
static PyObject *blame_tag(Masks *k, const Plan *plan, PyObject *model) {
    if (k->small && plan->names != NULL) {
        /* from the program: in a storm most down sets of a large service are new. (The
         * memo is the one part of a plan written after it is compiled.) */
        Plan *p = (Plan *)plan;
        uint64_t d = k->d;
        if (p->memo_cap) {
            size_t i = memo_slot(d, p->memo_cap);
            while (p->memo_tag[i] != NULL) {
                if (p->memo_d[i] == d) {
                    Py_INCREF(p->memo_tag[i]);
                    return p->memo_tag[i];
                }
                i = (i + 1) & (size_t)(p->memo_cap - 1);
            }
        }
        PyObject *tag = plan_blame_tag(plan, d);
        if (tag != NULL && plan_memo_put(p, d, tag) < 0) Py_CLEAR(tag);
        return tag;
    }
    PyObject *d = mask_obj(k, 0);
    if (d == NULL) return NULL;
    PyObject *tag = PyDict_GetItemWithError(plan->cache, d);
    if (tag != NULL) {
        Py_INCREF(tag);
        Py_DECREF(d);
        return tag;
    }
    if (PyErr_Occurred()) { Py_DECREF(d); return NULL; }
    tag = PyObject_CallMethodOneArg(model, s_blame_mask, d);
    Py_DECREF(d);
    return tag;
}

/* plan_memo(plan) -> {down mask: tag}: the plan's blame memo, for the tests. */
static PyObject *plan_memo(PyObject *self, PyObject *cap) {
    Plan *plan = PyCapsule_GetPointer(cap, "slawatch.plan");
    if (plan == NULL) return NULL;
    PyObject *out = PyDict_New();
    for (Py_ssize_t i = 0; out != NULL && i < plan->memo_cap; i++) {
        if (plan->memo_tag[i] == NULL) continue;
        PyObject *d = PyLong_FromUnsignedLongLong(plan->memo_d[i]);
        if (d == NULL || PyDict_SetItem(out, d, plan->memo_tag[i]) < 0) Py_CLEAR(out);
        Py_XDECREF(d);
    }
    return out;
}

/* blame_plan(plan, down) -> tag: for the tests, against model.blame_mask. */
static PyObject *blame_plan(PyObject *self, PyObject *args) {
    PyObject *cap, *d;
    if (!PyArg_ParseTuple(args, "OO!", &cap, &PyLong_Type, &d)) return NULL;
    Plan *plan = PyCapsule_GetPointer(cap, "slawatch.plan");
    if (plan == NULL) return NULL;
    if (!plan->small || plan->names == NULL) {
        PyErr_SetString(PyExc_ValueError, "the plan has no program or no names");
        return NULL;
    }
    uint64_t down = PyLong_AsUnsignedLongLong(d);
    if (PyErr_Occurred()) return NULL;
    return plan_blame_tag(plan, down);
}

/* evaluate_plan(plan, down, bad) -> state: for the tests, against the Python twins. */
static PyObject *evaluate_plan(PyObject *self, PyObject *args) {
    PyObject *cap, *d, *m;
    if (!PyArg_ParseTuple(args, "OO!O!", &cap, &PyLong_Type, &d, &PyLong_Type, &m)) return NULL;
    Plan *plan = PyCapsule_GetPointer(cap, "slawatch.plan");
    if (plan == NULL) return NULL;
    Masks k = {plan->small, 0, 0, d, m};
    if (k.small) {
        k.d = PyLong_AsUnsignedLongLong(d);
        k.m = PyLong_AsUnsignedLongLong(m);
        if (PyErr_Occurred()) return NULL;
    }
    int st = eval_state(&k, plan);
    return st < 0 ? NULL : PyLong_FromLong(st);
}

static inline int eq(PyObject *a, PyObject *b) {
    if (a == b) return 1;
    return PyObject_RichCompareBool(a, b, Py_EQ);
}

/* ---- ServiceTracker.apply_many: the segments one at a time, from tuples or columns ------ */

/* Append a C value to a timeline column in place (what array.append does, without an
 * object made per value: a segment appends five); the generic append of an object when
 * the fast path cannot. */
static int col_append_d(PyObject *col, double x) {
    int done = arr_put(col, 'd', &x, (Py_ssize_t)sizeof x);
    return done ? (done < 0 ? -1 : 0) : arr_append_obj(col, PyFloat_FromDouble(x));
}

/* ``v`` appended to a column of states ('b', v <= 2) or of tag indexes ('I'). */
static int col_append_u(PyObject *col, char code, unsigned int v) {
    int done = 0;
    if (code == 'b' && v <= 127) {
        signed char c = (signed char)v;
        done = arr_put(col, 'b', &c, 1);
    } else if (code == 'I') {
        done = arr_put(col, 'I', &v, (Py_ssize_t)sizeof v);
    }
    return done ? (done < 0 ? -1 : 0) : arr_append_obj(col, PyLong_FromUnsignedLong(v));
}

/* What one call of apply_many holds. Two memos, valid for the call only: each
 * component's copy and bit, by the id object (the copies dict and the model's bits were
 * two dict lookups a segment), and for models of at most 64 components the tag of each
 * down mask with its index in the service timeline's table (a blame tuple made or
 * found, then hashed to look up its index, was a third of a segment's cost in a storm,
 * where the same down sets recur within a fetch). */
#define TAG_MEMO 64  /* entries, a power of 2 */
typedef struct { PyObject *comp, *tl, *bit; uint64_t b; } CompSeen;
typedef struct { uint64_t d; PyObject *tag; unsigned int g; } TagSeen;

typedef struct {
    PyObject *tracker, *model, *plan_cap, *comps, *svc, *sts, *sst, *stag, *dirty;
    Plan *plan;
    Masks k;
    double frontier;
    CompSeen *seen;
    Py_ssize_t seen_cap, seen_n;
    TagSeen tags[TAG_MEMO];  /* tag NULL: empty */
} Applier;

static void ap_forget_tags(Applier *a) {
    for (int i = 0; i < TAG_MEMO; i++) Py_CLEAR(a->tags[i].tag);
}

static void ap_free(Applier *a) {
    if (a->seen != NULL) {
        for (Py_ssize_t i = 0; i < a->seen_cap; i++) {
            CompSeen *e = a->seen + i;
            if (e->comp == NULL) continue;
            Py_DECREF(e->comp); Py_DECREF(e->tl); Py_XDECREF(e->bit);
        }
        PyMem_Free(a->seen);
    }
    ap_forget_tags(a);
    Py_XDECREF(a->dirty);
    Py_XDECREF(a->plan_cap); Py_XDECREF(a->comps); Py_XDECREF(a->svc);
    Py_XDECREF(a->sts); Py_XDECREF(a->sst); Py_XDECREF(a->stag);
    Py_XDECREF(a->k.D); Py_XDECREF(a->k.M);
}

/* Read the tracker (apply_many after its bind check): 0, or -1 with an exception (then
 * ap_free still). */
static int ap_open(Applier *a, PyObject *tracker, PyObject *model) {
    memset(a, 0, sizeof(*a));
    a->tracker = tracker;
    a->model = model;
    a->plan_cap = PyObject_GetAttr(model, s_plan);
    if (a->plan_cap == NULL) return -1;
    a->plan = PyCapsule_GetPointer(a->plan_cap, "slawatch.plan");
    if (a->plan == NULL) return -1;
    a->comps = slot_get(tracker, &SV_COMPONENTS);
    a->svc = slot_get(tracker, &SV_TIMELINE);
    if (!a->comps || !a->svc) return -1;
    if (!PyDict_CheckExact(a->comps)) {
        PyErr_SetString(PyExc_TypeError, "components must be a dict");
        return -1;
    }
    a->sts = col_slot(a->svc, &TL_TS);
    if (a->sts) a->sst = col_slot(a->svc, &TL_ST);
    if (a->sst) a->stag = col_slot(a->svc, &TL_TAG);
    if (!a->stag) return -1;
    PyObject *o = slot_get(tracker, &SV_FRONTIER);
    if (o == NULL) return -1;
    a->frontier = PyFloat_AsDouble(o);
    Py_DECREF(o);
    if (a->frontier == -1.0 && PyErr_Occurred()) return -1;
    a->k.D = slot_get(tracker, &SV_DOWN);
    a->k.M = slot_get(tracker, &SV_BAD);
    if (!a->k.D || !a->k.M) return -1;
    if (a->plan->small) {
        a->k.small = 1;
        a->k.d = PyLong_AsUnsignedLongLong(a->k.D);
        a->k.m = PyLong_AsUnsignedLongLong(a->k.M);
        if (PyErr_Occurred()) return -1;
    }
    a->seen_cap = 32;
    a->seen = PyMem_Calloc((size_t)a->seen_cap, sizeof(CompSeen));
    if (a->seen == NULL) { PyErr_NoMemory(); return -1; }
    return 0;
}

static inline size_t ap_slot_of(PyObject *comp, Py_ssize_t cap) {
    return (size_t)(((uint64_t)(uintptr_t)comp * 0x9E3779B97F4A7C15ULL) >> 32) & (size_t)(cap - 1);
}

/* The memo entry of a component: its copy (made if new, as apply_many always did) and
 * its bit (NULL: a component the model does not read). NULL with an exception. */
static CompSeen *ap_comp(Applier *a, PyObject *comp) {
    size_t i = ap_slot_of(comp, a->seen_cap);
    while (a->seen[i].comp != NULL) {
        if (a->seen[i].comp == comp) return a->seen + i;
        i = (i + 1) & (size_t)(a->seen_cap - 1);
    }
    if (2 * (a->seen_n + 1) > a->seen_cap) {  /* grow to keep probes short */
        Py_ssize_t cap = a->seen_cap * 2;
        CompSeen *grown = PyMem_Calloc((size_t)cap, sizeof(CompSeen));
        if (grown == NULL) { PyErr_NoMemory(); return NULL; }
        for (Py_ssize_t j = 0; j < a->seen_cap; j++) {
            if (a->seen[j].comp == NULL) continue;
            size_t h = ap_slot_of(a->seen[j].comp, cap);
            while (grown[h].comp != NULL) h = (h + 1) & (size_t)(cap - 1);
            grown[h] = a->seen[j];
        }
        PyMem_Free(a->seen);
        a->seen = grown;
        a->seen_cap = cap;
        i = ap_slot_of(comp, cap);
        while (a->seen[i].comp != NULL) i = (i + 1) & (size_t)(cap - 1);
    }
    PyObject *tl = PyDict_GetItemWithError(a->comps, comp);  /* borrowed */
    if (tl == NULL) {
        if (PyErr_Occurred()) return NULL;
        tl = new_timeline_obj();
        if (tl == NULL) return NULL;
        int r = PyDict_SetItem(a->comps, comp, tl);
        Py_DECREF(tl);
        if (r < 0) return NULL;
    }
    PyObject *bit = PyDict_GetItemWithError(a->plan->bits, comp);
    if (bit == NULL && PyErr_Occurred()) return NULL;
    uint64_t b = 0;
    if (bit != NULL && a->k.small) {
        b = PyLong_AsUnsignedLongLong(bit);
        if (b == (uint64_t)-1 && PyErr_Occurred()) return NULL;
    }
    CompSeen *e = a->seen + i;
    Py_INCREF(comp); e->comp = comp;
    Py_INCREF(tl); e->tl = tl;
    Py_XINCREF(bit); e->bit = bit;
    e->b = b;
    a->seen_n++;
    return e;
}

/* The component's bit in the masks for its new state. */
static inline int ap_set(Applier *a, CompSeen *e, int state) {
    if (e->bit == NULL) return 0;
    if (!a->k.small) return set_bit(&a->k, e->bit, state);
    uint64_t b = e->b;
    if (state == ST_DOWN) { a->k.d |= b; a->k.m |= b; }
    else if (state) { a->k.d &= ~b; a->k.m |= b; }
    else { a->k.d &= ~b; a->k.m &= ~b; }
    return 0;
}

static int ap_settle(Applier *a) {
    PyObject *r = PyObject_CallMethodObjArgs(a->tracker, s_settle, a->dirty, a->model, NULL);
    if (r == NULL) return -1;
    Py_DECREF(r);
    Py_CLEAR(a->dirty);
    ap_forget_tags(a);  /* a re-evaluation edits the tag table: looked up afresh */
    return 0;
}

/* ``*obj``, or a new float for ``x`` kept in ``*own`` (the caller frees it). */
static inline PyObject *ap_float(PyObject *obj, PyObject **own, double x) {
    if (obj != NULL) return obj;
    if (*own == NULL) *own = PyFloat_FromDouble(x);
    return *own;
}

/* tag_index(svc, tag) as a C index, with one probe of the timeline's index
 * (PyDict_SetDefault: hashing a tag tuple is most of a lookup, and in a storm most
 * down sets are new to the service's history). -1 on error. */
static long long ap_tag_index(Applier *a, PyObject *tag) {
    if (tag == NO_TAG || (PyTuple_CheckExact(tag) && PyTuple_GET_SIZE(tag) == 0)) return 0;
    PyObject *gx = slot_get(a->svc, &TL_GX), *tags = NULL, *gi = NULL;
    long long g = -1;
    if (gx == NULL) return -1;
    if (gx != NO_TAG_INDEX && PyDict_CheckExact(gx)) {
        tags = slot_get(a->svc, &TL_TAGS);
        if (tags == NULL) { Py_DECREF(gx); return -1; }
    }
    if (tags == NULL || !PyList_CheckExact(tags)) {
        gi = tag_index(a->svc, tag);  /* the shared empty table, or not ours: intern() */
    } else {
        PyObject *ix = PyLong_FromSsize_t(PyList_GET_SIZE(tags));
        if (ix != NULL) {
            PyObject *got = PyDict_SetDefault(gx, tag, ix);  /* borrowed */
            if (got == ix && PyList_Append(tags, tag) < 0) {
#if PY_VERSION_HEX >= 0x030C0000
                PyObject *err = PyErr_GetRaisedException();
                if (PyDict_DelItem(gx, tag) < 0) PyErr_Clear();
                PyErr_SetRaisedException(err);
#else
                PyObject *et, *ev, *tb;
                PyErr_Fetch(&et, &ev, &tb);
                if (PyDict_DelItem(gx, tag) < 0) PyErr_Clear();
                PyErr_Restore(et, ev, tb);
#endif
                got = NULL;
            }
            Py_XINCREF(got);
            gi = got;
            Py_DECREF(ix);
        }
    }
    Py_DECREF(gx);
    Py_XDECREF(tags);
    if (gi == NULL) return -1;
    unsigned long gv = PyLong_AsUnsignedLong(gi);
    Py_DECREF(gi);
    if (gv == (unsigned long)-1 && PyErr_Occurred()) return -1;
    if (gv > 0xffffffffUL) {
        PyErr_SetString(PyExc_OverflowError, "tag index out of range");
        return -1;
    }
    g = (long long)gv;
    return g;
}

/* Evaluate the service after an in-order segment at ``start`` and append the point
 * (t, st, tag) unless it changes nothing; at the instant of the last point,
 * Timeline.append_state decides. */
static int ap_service(Applier *a, double start, PyObject *start_obj) {
    int st = eval_state(&a->k, a->plan);
    if (st < 0) return -1;
    PyObject *tag = NO_TAG, *own = NULL, *own_start = NULL;
    TagSeen *memo = NULL;
    unsigned int g = 0;
    int known = 1, rc = 0;
    if (st == ST_DOWN) {
        if (a->k.small) {
            memo = a->tags + ((a->k.d * 0x9E3779B97F4A7C15ULL) >> 58);  /* 64 entries */
            if (memo->tag != NULL && memo->d == a->k.d) { tag = memo->tag; g = memo->g; }
        }
        if (memo == NULL || memo->tag == NULL || memo->d != a->k.d) {
            own = tag = blame_tag(&a->k, a->plan, a->model);
            if (tag == NULL) return -1;
            known = 0;
        }
    }
    double last_t = 0.0;
    int has = dcol_last(a->sts, &last_t);
    if (has < 0) { rc = -1; goto out; }
    if (has && last_t == start) {  /* at the instant of the last point: append_state decides */
        PyObject *t = ap_float(start_obj, &own_start, start);
        if (t == NULL) { rc = -1; goto out; }
        PyObject *r = PyObject_CallMethodObjArgs(a->svc, s_append_state, t, STATE_INT[st], tag, NULL);
        if (r == NULL) rc = -1; else Py_DECREF(r);
        goto out;
    }
    if (!known) {
        long long gv = ap_tag_index(a, tag);
        if (gv < 0) { rc = -1; goto out; }
        g = (unsigned int)gv;
        if (memo != NULL) {
            Py_INCREF(tag);
            Py_XSETREF(memo->tag, tag);
            memo->d = a->k.d;
            memo->g = g;
        }
    }
    int lv = 0, differs;
    unsigned int lg = 0;
    int hs = bcol_last(a->sst, &lv);
    if (hs < 0 || icol_last(a->stag, &lg) < 0) { rc = -1; goto out; }
    differs = hs ? (lv != st || lg != g) : (st != 0 || g != 0);
    if (differs && (col_append_d(a->sts, start) < 0 || col_append_u(a->sst, 'b', (unsigned int)st) < 0
                    || col_append_u(a->stag, 'I', g) < 0))
        rc = -1;
out:
    Py_XDECREF(own);
    Py_XDECREF(own_start);
    return rc;
}

/* Apply one segment (the body of ServiceTracker.apply_many's loop). ``start_obj`` and
 * ``end_obj`` are the segment's objects when it came as a tuple, else NULL (made only
 * if a Python method needs them); ``state_obj`` likewise, else ``state`` is checked. */
static int ap_segment(Applier *a, PyObject *comp, double start, PyObject *start_obj,
                      double end, PyObject *end_obj, PyObject *state_obj, int state) {
    int open = end == INFINITY, rc = 0;
    PyObject *own_start = NULL, *own_end = NULL, *times = NULL, *tstates = NULL, *ttag = NULL;
    if (a->dirty != NULL && a->frontier <= start && open && ap_settle(a) < 0) return -1;
    if (state_obj != NULL && (state = as_state(state_obj)) < 0) return -1;
    CompSeen *e = ap_comp(a, comp);
    if (e == NULL) return -1;
    PyObject *tl = e->tl;
    times = col_slot(tl, &TL_TS);
    if (times == NULL) return -1;
    int in_order = 0;
    if (open && start > a->frontier) {
        /* After every point of every copy (frontier is the latest of them): in order
         * for the component, at a new instant. */
        in_order = 1;
    } else if (open) {
        double last_t = 0.0;
        int has = dcol_last(times, &last_t);
        if (has < 0) { rc = -1; goto out; }
        if (!has) in_order = 1;
        else if (start >= last_t) in_order = last_t == start ? 2 : 1;
    }
    if (in_order) {
        if (in_order == 2) {
            PyObject *t = ap_float(start_obj, &own_start, start);
            if (t == NULL) { rc = -1; goto out; }
            PyObject *r = PyObject_CallMethodObjArgs(tl, s_append_state, t, STATE_INT[state], NULL);
            if (r == NULL) { rc = -1; goto out; }
            Py_DECREF(r);
        } else {
            tstates = col_slot(tl, &TL_ST);
            if (tstates == NULL) { rc = -1; goto out; }
            int lsv = 0, changed = state != 0;
            int hs = bcol_last(tstates, &lsv);
            if (hs < 0) { rc = -1; goto out; }
            if (hs) changed = lsv != state;
            if (changed) {
                ttag = col_slot(tl, &TL_TAG);
                if (ttag == NULL || col_append_d(times, start) < 0
                        || col_append_u(tstates, 'b', (unsigned int)state) < 0
                        || col_append_u(ttag, 'I', 0) < 0) { rc = -1; goto out; }
            }
        }
        if (ap_set(a, e, state) < 0) { rc = -1; goto out; }
        if (start < a->frontier || a->dirty != NULL) {
            /* in the past of another component's change (or after a segment that was,
             * at the same instant): re-evaluated when settled */
            if (start > a->frontier) a->frontier = start;
            PyObject *t = ap_float(start_obj, &own_start, start);
            if (t == NULL || (a->dirty == NULL && (a->dirty = PyList_New(0)) == NULL)) { rc = -1; goto out; }
            PyObject *iv = PyTuple_Pack(2, t, INF_obj);
            if (iv == NULL || PyList_Append(a->dirty, iv) < 0) { Py_XDECREF(iv); rc = -1; goto out; }
            Py_DECREF(iv);
            goto out;
        }
        a->frontier = start;
        rc = ap_service(a, start, start_obj);
        goto out;
    }
    /* in the past: overwrite the copy; the service is re-evaluated when settled */
    {
        PyObject *t = ap_float(start_obj, &own_start, start);
        PyObject *u = ap_float(end_obj, &own_end, end);
        if (t == NULL || u == NULL) { rc = -1; goto out; }
        PyObject *pt = PyTuple_Pack(3, t, STATE_INT[state], NO_TAG);
        if (pt == NULL) { rc = -1; goto out; }
        PyObject *pts = PyList_New(1);
        if (pts == NULL) { Py_DECREF(pt); rc = -1; goto out; }
        PyList_SET_ITEM(pts, 0, pt);
        PyObject *r = PyObject_CallMethodObjArgs(tl, s_assign, t, u, pts, NULL);
        Py_DECREF(pts);
        if (r == NULL) { rc = -1; goto out; }
        Py_DECREF(r);
        if (e->bit != NULL) {
            tstates = col_slot(tl, &TL_ST);
            if (tstates == NULL) { rc = -1; goto out; }
            int last = ST_UP;
            if (bcol_last(tstates, &last) < 0) { rc = -1; goto out; }
            if (last < 0 || last > 2) {
                PyErr_Format(PyExc_ValueError, "state %d is not 0, 1 or 2", last);
                rc = -1;
                goto out;
            }
            if (ap_set(a, e, last) < 0) { rc = -1; goto out; }
        }
        double reach = open ? start : end;
        if (reach > a->frontier) a->frontier = reach;
        if (a->dirty == NULL && (a->dirty = PyList_New(0)) == NULL) { rc = -1; goto out; }
        PyObject *iv = PyTuple_Pack(2, t, u);
        if (iv == NULL || PyList_Append(a->dirty, iv) < 0) { Py_XDECREF(iv); rc = -1; goto out; }
        Py_DECREF(iv);
    }
out:
    Py_XDECREF(times); Py_XDECREF(tstates); Py_XDECREF(ttag);
    Py_XDECREF(own_start); Py_XDECREF(own_end);
    return rc;
}

/* After the last segment: the masks and frontier stored, what is left dirty settled. */
static int ap_close(Applier *a) {
    PyObject *d = mask_obj(&a->k, 0), *m = mask_obj(&a->k, 1), *f = PyFloat_FromDouble(a->frontier);
    int rc = (d && m && f) ? 0 : -1;
    if (rc == 0) rc = slot_set(a->tracker, &SV_DOWN, d);
    if (rc == 0) rc = slot_set(a->tracker, &SV_BAD, m);
    if (rc == 0) rc = slot_set(a->tracker, &SV_FRONTIER, f);
    Py_XDECREF(d); Py_XDECREF(m); Py_XDECREF(f);
    if (rc < 0) return -1;
    if (a->dirty != NULL && PyList_GET_SIZE(a->dirty)) return ap_settle(a);
    return 0;
}

/* apply_many(tracker, segments, model): ServiceTracker.apply_many after its bind check.
 * The same steps, in the same order, on the same objects; see service.py. */
static PyObject *svc_apply_many(PyObject *self, PyObject *args) {
    PyObject *tracker, *segments, *model, *it = NULL, *seg = NULL, *result = NULL;
    if (!PyArg_ParseTuple(args, "OOO", &tracker, &segments, &model)) return NULL;
    Applier a;
    if (ap_open(&a, tracker, model) < 0) goto done;
    it = PyObject_GetIter(segments);
    if (it == NULL) goto done;
    while ((seg = PyIter_Next(it)) != NULL) {
        if (!PyTuple_Check(seg) || PyTuple_GET_SIZE(seg) != 4) {
            PyErr_SetString(PyExc_TypeError, "a segment is a (component, start, end, state) tuple");
            goto done;
        }
        PyObject *start_obj = PyTuple_GET_ITEM(seg, 1), *end_obj = PyTuple_GET_ITEM(seg, 2);
        double start = PyFloat_AsDouble(start_obj);
        if (start == -1.0 && PyErr_Occurred()) goto done;
        double end = PyFloat_AsDouble(end_obj);
        if (end == -1.0 && PyErr_Occurred()) goto done;
        if (ap_segment(&a, PyTuple_GET_ITEM(seg, 0), start, start_obj, end, end_obj,
                       PyTuple_GET_ITEM(seg, 3), 0) < 0)
            goto done;
        Py_CLEAR(seg);
    }
    if (PyErr_Occurred() || ap_close(&a) < 0) goto done;
    result = Py_None;
    Py_INCREF(result);
done:
    Py_XDECREF(seg);
    Py_XDECREF(it);
    ap_free(&a);
    return result;
}


/* ---- ServiceTracker._recompute ---------------------------------------------------------- */

typedef struct {
    double t;
    uint64_t bit;
    int s;
} Change;

static int change_cmp(const void *a, const void *b) {
    const Change *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    if (x->bit != y->bit) return x->bit < y->bit ? -1 : 1;
    return (x->s > y->s) - (x->s < y->s);
}

/* bisect.bisect_right / bisect_left over n sorted doubles, from lo */
static Py_ssize_t bisect_r(const double *a, Py_ssize_t hi, double x, Py_ssize_t lo) {
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (x < a[mid]) hi = mid; else lo = mid + 1;
    }
    return lo;
}

static Py_ssize_t bisect_l(const double *a, Py_ssize_t hi, double x, Py_ssize_t lo) {
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (a[mid] < x) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* Append (t, st, tag) to the point columns (arrays, for Timeline.assign_columns), the tag
 * as its index in the service timeline's table. */
static int push_tagged(PyObject *svc, PyObject *pts, PyObject *psts, PyObject *ptags, PyObject *t,
                       int st, PyObject *tag) {
    PyObject *g = tag_index(svc, tag);
    if (g == NULL) return -1;
    int rc = append_point(pts, t, psts, STATE_INT[st], ptags, g);
    Py_DECREF(g);
    return rc;
}

static int push_point(PyObject *svc, PyObject *pts, PyObject *psts, PyObject *ptags, double at, int st,
                      PyObject *tag) {
    PyObject *t = PyFloat_FromDouble(at);
    if (t == NULL) return -1;
    int rc = push_tagged(svc, pts, psts, ptags, t, st, tag);
    Py_DECREF(t);
    return rc;
}

/* recompute(tracker, start, end, model) -> bool: ServiceTracker._recompute for a model
 * with a program (at most 64 components); False, having done nothing, for another. */
static PyObject *svc_recompute(PyObject *self, PyObject *args) {
    PyObject *tracker, *start_obj, *end_obj, *model;
    if (!PyArg_ParseTuple(args, "OOOO", &tracker, &start_obj, &end_obj, &model)) return NULL;
    PyObject *plan_cap = PyObject_GetAttr(model, s_plan);
    if (plan_cap == NULL) return NULL;
    if (plan_cap == Py_None) { Py_DECREF(plan_cap); Py_RETURN_FALSE; }
    Plan *plan = PyCapsule_GetPointer(plan_cap, "slawatch.plan");
    if (plan == NULL) { Py_DECREF(plan_cap); return NULL; }
    if (!plan->small || plan->prog == NULL) { Py_DECREF(plan_cap); Py_RETURN_FALSE; }
    double start = PyFloat_AsDouble(start_obj), end = PyFloat_AsDouble(end_obj);
    if (PyErr_Occurred()) { Py_DECREF(plan_cap); return NULL; }

    PyObject *comps = NULL, *pts = NULL, *psts = NULL, *ptags = NULL, *last_tag = NULL,
             *svc = NULL, *result = NULL;
    Change *changes = NULL;
    Py_ssize_t nch = 0, cap = 0;
    Masks k = {1, 0, 0, NULL, NULL};

    comps = slot_get(tracker, &SV_COMPONENTS);
    if (comps == NULL) goto done;
    if (!PyDict_CheckExact(comps)) {
        PyErr_SetString(PyExc_TypeError, "components must be a dict");
        goto done;
    }
    Py_ssize_t pos = 0;
    PyObject *comp, *bitobj;
    while (PyDict_Next(plan->bits, &pos, &comp, &bitobj)) {
        PyObject *tl = PyDict_GetItemWithError(comps, comp);
        if (tl == NULL) { if (PyErr_Occurred()) goto done; continue; }
        PyObject *ts = col_slot(tl, &TL_TS);
        if (ts == NULL) goto done;
        PyObject *sts = col_slot(tl, &TL_ST);
        if (sts == NULL) { Py_DECREF(ts); goto done; }
        Py_buffer tv, sv_;
        if (col_view(ts, &tv, 'd') < 0) { Py_DECREF(ts); Py_DECREF(sts); goto done; }
        if (col_view(sts, &sv_, 'b') < 0) { PyBuffer_Release(&tv); Py_DECREF(ts); Py_DECREF(sts); goto done; }
        Py_DECREF(ts);
        Py_DECREF(sts);  /* the views hold the columns */
        const double *tsa = tv.buf;
        const signed char *sta = sv_.buf;
        Py_ssize_t n = tv.len / (Py_ssize_t)sizeof(double);
        int bad = 0;
        if (sv_.len != n) {
            PyErr_SetString(PyExc_ValueError, "a timeline's columns differ in length");
            bad = 1;
        }
        uint64_t bit = 0;
        if (!bad && n) {
            bit = PyLong_AsUnsignedLongLong(bitobj);
            if (bit == (uint64_t)-1 && PyErr_Occurred()) bad = 1;
        }
        if (!bad && n) {
            Py_ssize_t i = bisect_r(tsa, n, start, 0);
            int st = i ? sta[i - 1] : ST_UP;
            if (st) { k.m |= bit; if (st == ST_DOWN) k.d |= bit; }
            Py_ssize_t j = end == INFINITY ? n : bisect_l(tsa, n, end, i);
            if (j > i && nch + (j - i) > cap) {
                Py_ssize_t want = (nch + (j - i)) * 2;
                Change *grown = PyMem_Realloc(changes, (size_t)want * sizeof(Change));
                if (grown == NULL) { PyErr_NoMemory(); bad = 1; }
                else { changes = grown; cap = want; }
            }
            for (Py_ssize_t q = i; !bad && q < j; q++) {
                int s = sta[q];
                if (s < 0 || s > 2) {
                    PyErr_Format(PyExc_ValueError, "state %d is not 0, 1 or 2", s);
                    bad = 1;
                    break;
                }
                changes[nch].t = tsa[q];
                changes[nch].bit = bit;
                changes[nch].s = s;
                nch++;
            }
        }
        PyBuffer_Release(&tv);
        PyBuffer_Release(&sv_);
        if (bad) goto done;
    }
    if (PyErr_Occurred()) goto done;
    int last_st = eval_state(&k, plan);
    if (last_st < 0) goto done;
    if (last_st == ST_DOWN) { if ((last_tag = blame_tag(&k, plan, model)) == NULL) goto done; }
    else { last_tag = NO_TAG; Py_INCREF(last_tag); }
    svc = slot_get(tracker, &SV_TIMELINE);
    if (svc == NULL) goto done;
    /* the columns assign_columns takes over as they are (appended to in place: from
     * lists it converted each item with PyArg_Parse, more than the sweep itself) */
    pts = PyObject_CallFunction((PyObject *)Array_type, "s", "d");
    psts = pts ? PyObject_CallFunction((PyObject *)Array_type, "s", "b") : NULL;
    ptags = psts ? PyObject_CallFunction((PyObject *)Array_type, "s", "I") : NULL;
    if (!pts || !psts || !ptags) goto done;
    if (push_tagged(svc, pts, psts, ptags, start_obj, last_st, last_tag) < 0) goto done;
    if (nch) {
        qsort(changes, (size_t)nch, sizeof(Change), change_cmp);
        double at = changes[0].t;
        for (Py_ssize_t q = 0; q <= nch; q++) {
            if (q == nch || changes[q].t != at) {
                int st = eval_state(&k, plan);
                if (st < 0) goto done;
                PyObject *tag;
                if (st == ST_DOWN) { if ((tag = blame_tag(&k, plan, model)) == NULL) goto done; }
                else { tag = NO_TAG; Py_INCREF(tag); }
                int same = st == last_st;
                if (same) {
                    same = eq(tag, last_tag);
                    if (same < 0) { Py_DECREF(tag); goto done; }
                }
                if (!same) {
                    if (push_point(svc, pts, psts, ptags, at, st, tag) < 0) { Py_DECREF(tag); goto done; }
                    last_st = st;
                    Py_SETREF(last_tag, tag);
                } else {
                    Py_DECREF(tag);
                }
                if (q == nch) break;
                at = changes[q].t;
            }
            uint64_t b = changes[q].bit;
            int sv = changes[q].s;
            if (sv == ST_DOWN) { k.d |= b; k.m |= b; }
            else if (sv) { k.d &= ~b; k.m |= b; }
            else { k.d &= ~b; k.m &= ~b; }
        }
    }
    PyObject *r = PyObject_CallMethodObjArgs(svc, s_assign_columns, start_obj, end_obj, pts, psts, ptags, NULL);
    if (r == NULL) goto done;
    Py_DECREF(r);
    result = Py_True;
    Py_INCREF(result);
done:
    PyMem_Free(changes);
    Py_XDECREF(plan_cap); Py_XDECREF(comps); Py_XDECREF(svc);
    Py_XDECREF(pts); Py_XDECREF(psts); Py_XDECREF(ptags); Py_XDECREF(last_tag);
    return result;
}

/* ---- decoding: batch.decode_columns after orjson --------------------------------------- */

static PyObject *s_component, *s_state, *s_ts_key, *s_source, *s_id;

/* columns((objs), valid_ids, state_of, now, max_future) -> (comps, states, tss) or None
 *
 * decode_columns' checks over orjson's dicts, in one pass: None whenever an object is
 * not a plain valid event. columns_raw's path for a message it does not read itself. */
static PyObject *columns(PyObject *self, PyObject *args) {
    PyObject *objs, *valid, *state_of;
    double now, max_future;
    if (!PyArg_ParseTuple(args, "O!O!O!dd", &PyList_Type, &objs, &PySet_Type, &valid,
                          &PyDict_Type, &state_of, &now, &max_future))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(objs);
    PyObject *comps = PyList_New(n), *states = PyList_New(n), *tss = PyList_New(n);
    if (!comps || !states || !tss) goto fail;
    double mx = -INFINITY;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *obj = PyList_GET_ITEM(objs, i);
        if (!PyDict_CheckExact(obj)) goto plain_not;
        PyObject *comp = PyDict_GetItemWithError(obj, s_component);
        if (comp == NULL) { if (PyErr_Occurred()) goto fail; goto plain_not; }
        int has = PySet_Contains(valid, comp);
        if (has < 0) { PyErr_Clear(); goto plain_not; }  /* unhashable */
        if (!has) goto plain_not;
        PyObject *name = PyDict_GetItemWithError(obj, s_state);
        if (name == NULL) { if (PyErr_Occurred()) goto fail; goto plain_not; }
        PyObject *st = PyDict_GetItemWithError(state_of, name);
        if (st == NULL) { if (PyErr_Occurred()) PyErr_Clear(); goto plain_not; }
        PyObject *ts = PyDict_GetItemWithError(obj, s_ts_key);
        if (ts == NULL) { if (PyErr_Occurred()) goto fail; goto plain_not; }
        double t;
        if (PyFloat_CheckExact(ts)) {
            t = PyFloat_AS_DOUBLE(ts);
            Py_INCREF(ts);
        } else if (PyLong_CheckExact(ts)) {
            t = PyLong_AsDouble(ts);
            if (t == -1.0 && PyErr_Occurred()) { PyErr_Clear(); goto plain_not; }  /* too big */
            ts = PyFloat_FromDouble(t);
            if (ts == NULL) goto fail;
        } else {
            goto plain_not;
        }
        PyList_SET_ITEM(tss, i, ts);
        if (t > mx) mx = t;
        PyObject *src = PyDict_GetItemWithError(obj, s_source);
        if (src == NULL && PyErr_Occurred()) goto fail;
        if (src != NULL && src != Py_None && !PyUnicode_CheckExact(src)) goto plain_not;
        PyObject *id = PyDict_GetItemWithError(obj, s_id);
        if (id == NULL && PyErr_Occurred()) goto fail;
        if (id != NULL && id != Py_None && !PyUnicode_CheckExact(id)) goto plain_not;
        /* Interned (the catalog interns its ids): the catalog's own string object of
         * the id goes on, and every later dict lookup by it (services, trackers, copies,
         * bits) matches by identity, without comparing characters. Only ids already
         * known valid get here, so the interned set stays bounded. */
        Py_INCREF(comp);
        if (PyUnicode_CheckExact(comp)) PyUnicode_InternInPlace(&comp);
        PyList_SET_ITEM(comps, i, comp);
        Py_INCREF(st);
        PyList_SET_ITEM(states, i, st);
    }
    if (n && mx - now > max_future) goto plain_not;
    {
        PyObject *out = PyTuple_Pack(3, comps, states, tss);
        Py_DECREF(comps); Py_DECREF(states); Py_DECREF(tss);
        return out;
    }
plain_not:
    Py_XDECREF(comps); Py_XDECREF(states); Py_XDECREF(tss);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(comps); Py_XDECREF(states); Py_XDECREF(tss);
    return NULL;
}


/* ---- decoding without building dicts ------------------------------------------------------
 * The plain event as publishers write it: a JSON object with component, state and ts, and
 * maybe source and id, nothing else, each once; strings of printable ASCII without
 * escapes; ts a JSON number. Such a message is read here directly into the columns; any
 * other message (another key, an escape, non-ASCII, an RFC 3339 ts, bad JSON) is left to
 * orjson and the dict checks, so what is accepted, and how, does not change. */

typedef struct {
    const char *comp;
    Py_ssize_t comp_len;
    int state;  /* 0 up, 1 maintenance, 2 down; -1: another name */
    double ts;
} Plain;

static inline const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* 1 for the bytes a plain string holds: printable ASCII but the quote and the
 * backslash (one load a byte instead of four comparisons); filled at import. */
static unsigned char plain_byte[256];

/* A string of printable ASCII without escapes, p at its opening quote; NULL otherwise. */
static inline const char *scan_string(const char *p, const char *end, const char **start, Py_ssize_t *len) {
    if (p >= end || *p != '"') return NULL;
    const char *q = ++p;
    while (q < end && plain_byte[(unsigned char)*q]) q++;
    if (q >= end || *q != '"') return NULL;
    *start = p;
    *len = q - p;
    return q + 1;
}

/* The double nearest a JSON number (b..end, already checked against the grammar) when
 * its digits, without the point, are an integer m <= 2^53 and its decimal exponent e is
 * within 22 of 0: then m and 10^|e| are exact doubles and one IEEE multiplication or
 * division rounds m * 10^e correctly (Clinger's fast path), the same double strtod
 * gives. 0 otherwise (strtod then). Event timestamps (seconds with up to 6 decimals)
 * are such numbers; strtod took ~450 instructions for one. */
static int decimal_fast(const char *b, const char *end, double *out) {
    static const double pow10[23] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                     1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const char *p = b;
    int neg = 0;
    if (*p == '-') { neg = 1; p++; }
    uint64_t m = 0;
    int digits = 0, frac = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        if (++digits > 19) return 0;
        m = m * 10 + (uint64_t)(*p++ - '0');
    }
    if (p < end && *p == '.') {
        p++;
        while (p < end && *p >= '0' && *p <= '9') {
            if (++digits > 19) return 0;
            m = m * 10 + (uint64_t)(*p++ - '0');
            frac++;
        }
    }
    int e = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int eneg = 0;
        if (*p == '+' || *p == '-') eneg = *p++ == '-';
        while (p < end) {
            if (e > 1000) return 0;
            e = e * 10 + (*p++ - '0');
        }
        if (eneg) e = -e;
    }
    e -= frac;
    if (m > ((uint64_t)1 << 53) || e < -22 || e > 22) return 0;
    double v = (double)m;
    v = e >= 0 ? v * pow10[e] : v / pow10[-e];
    *out = neg ? -v : v;
    return 1;
}

/* A JSON number (RFC 8259 grammar), at most 32 characters; NULL otherwise. */
static inline const char *scan_number(const char *p, const char *end, double *out) {
    const char *b = p;
    if (p < end && *p == '-') p++;
    if (p >= end) return NULL;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') { while (p < end && *p >= '0' && *p <= '9') p++; }
    else return NULL;
    int integral = 1;
    if (p < end && *p == '.') {
        integral = 0;
        p++;
        if (p >= end || !(*p >= '0' && *p <= '9')) return NULL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integral = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || !(*p >= '0' && *p <= '9')) return NULL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    Py_ssize_t n = p - b;
    /* integers beyond 18 digits: orjson's limits decide */
    if (n > 32 || (integral && n > 18)) return NULL;
    double fast;
    if (decimal_fast(b, p, &fast)) {
        if (integral && fast == 0.0) fast = 0.0;  /* as below */
        *out = fast;
        return p;
    }
    char buf[40];
    memcpy(buf, b, (size_t)n);
    buf[n] = 0;
    char *stop;
    double v = PyOS_string_to_double(buf, &stop, NULL);
    if (v == -1.0 && PyErr_Occurred()) { PyErr_Clear(); return NULL; }
    if (stop != buf + n || isinf(v)) return NULL;
    if (integral && v == 0.0) v = 0.0;  /* "-0" is the int 0 to orjson: float(0) is +0.0 */
    *out = v;
    return p;
}

static int scan_plain(const char *p, Py_ssize_t size, Plain *out) {
    const char *end = p + size;
    int seen = 0;  /* bits: component, state, ts, source, id */
    p = skip_ws(p, end);
    if (p >= end || *p != '{') return 0;
    p = skip_ws(p + 1, end);
    for (;;) {
        const char *key;
        Py_ssize_t klen;
        if ((p = scan_string(p, end, &key, &klen)) == NULL) return 0;
        p = skip_ws(p, end);
        if (p >= end || *p != ':') return 0;
        p = skip_ws(p + 1, end);
        int bit;
        if (klen == 9 && memcmp(key, "component", 9) == 0) bit = 1;
        else if (klen == 5 && memcmp(key, "state", 5) == 0) bit = 2;
        else if (klen == 2 && memcmp(key, "ts", 2) == 0) bit = 4;
        else if (klen == 6 && memcmp(key, "source", 6) == 0) bit = 8;
        else if (klen == 2 && memcmp(key, "id", 2) == 0) bit = 16;
        else return 0;
        if (seen & bit) return 0;
        seen |= bit;
        const char *v;
        Py_ssize_t vlen;
        if (bit == 1) {
            if ((p = scan_string(p, end, &out->comp, &out->comp_len)) == NULL) return 0;
        } else if (bit == 2) {
            if ((p = scan_string(p, end, &v, &vlen)) == NULL) return 0;
            if (vlen == 2 && memcmp(v, "up", 2) == 0) out->state = ST_UP;
            else if (vlen == 4 && memcmp(v, "down", 4) == 0) out->state = ST_DOWN;
            else if (vlen == 11 && memcmp(v, "maintenance", 11) == 0) out->state = ST_MAINT;
            else return 0;
        } else if (bit == 4) {
            if ((p = scan_number(p, end, &out->ts)) == NULL) return 0;
        } else if (end - p >= 4 && memcmp(p, "null", 4) == 0) {
            p += 4;
        } else if ((p = scan_string(p, end, &v, &vlen)) == NULL) {
            return 0;
        }
        p = skip_ws(p, end);
        if (p < end && *p == ',') { p = skip_ws(p + 1, end); continue; }
        if (p < end && *p == '}') break;
        return 0;
    }
    p = skip_ws(p + 1, end);
    return p == end && (seen & 7) == 7;
}

/* The component ids met so far, as interned strings, keyed by their UTF-8 bytes: one
 * table for the input decoder (columns_raw) and the segments decoder (segment_ids), which
 * meet the same ids. Why: making the str of an id, hashing it and interning it took ~500
 * instructions and a miss in the interned dict an event; here an id seen before costs a
 * hash of its bytes and one probe. Open addressing, grown to twice its ids; IDS_MAX ids
 * at most (past that it starts again empty), so made-up ids cannot grow it. ``ok`` is
 * set once the input decoder found the id in its set of well-formed ids: a segments
 * message is not checked so, and must not make an id well formed. */
typedef struct { const char *p; uint64_t h; PyObject *s; uint32_t len; uint32_t ok; } IdSeen;

#define IDS_MAX (1 << 17)
#define ID_LEN_MAX 4096  /* longer ids are decoded every time, not kept */
static IdSeen *ids_tab = NULL;     /* holds a reference to each s; p is s's UTF-8 */
static Py_ssize_t ids_cap = 0, ids_used = 0;

static inline uint64_t id_hash(const char *p, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ULL;  /* FNV-1a */
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    h ^= h >> 33;  /* mixed: FNV leaves the last bytes in few bits, and ids differ there */
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

/* The entry of the id whose bytes are p[0:n] (hash h), or NULL. */
static inline IdSeen *id_find(const char *p, Py_ssize_t n, uint64_t h) {
    if (ids_tab == NULL || n > ID_LEN_MAX) return NULL;  /* never kept (and len is 32 bits) */
    size_t k = (size_t)h & (size_t)(ids_cap - 1);
    while (ids_tab[k].s != NULL) {
        if (ids_tab[k].h == h && ids_tab[k].len == (uint32_t)n && memcmp(ids_tab[k].p, p, (size_t)n) == 0)
            return &ids_tab[k];
        k = (k + 1) & (size_t)(ids_cap - 1);
    }
    return NULL;
}

static void ids_clear(void) {
    for (Py_ssize_t j = 0; j < ids_cap; j++) Py_XDECREF(ids_tab[j].s);
    PyMem_Free(ids_tab);
    ids_tab = NULL;
    ids_cap = ids_used = 0;
}

/* Room for one more id: 0, or -1 with an exception. */
static int ids_room(void) {
    if (ids_tab != NULL && 2 * (ids_used + 1) <= ids_cap) return 0;
    if (ids_used >= IDS_MAX) ids_clear();  /* bounded: made-up ids cannot grow it */
    Py_ssize_t cap = ids_cap ? ids_cap * 2 : 1024;
    IdSeen *grown = PyMem_Calloc((size_t)cap, sizeof(IdSeen));
    if (grown == NULL) { PyErr_NoMemory(); return -1; }
    for (Py_ssize_t j = 0; j < ids_cap; j++) {
        if (ids_tab[j].s == NULL) continue;
        size_t m = (size_t)ids_tab[j].h & (size_t)(cap - 1);
        while (grown[m].s != NULL) m = (m + 1) & (size_t)(cap - 1);
        grown[m] = ids_tab[j];
    }
    PyMem_Free(ids_tab);
    ids_tab = grown;
    ids_cap = cap;
    return 0;
}

/* Keeps the interned str s (hash h of its UTF-8, not yet in the table): its entry, or
 * NULL (an exception set, or an id too long to keep: then no exception). The pointer
 * is good until the next id is kept. */
static IdSeen *id_keep(PyObject *s, uint64_t h) {
    Py_ssize_t ulen;
    const char *u = PyUnicode_AsUTF8AndSize(s, &ulen);  /* kept in s while it lives */
    if (u == NULL) return NULL;
    if (ulen > ID_LEN_MAX) return NULL;
    if (ids_room() < 0) return NULL;
    size_t k = (size_t)h & (size_t)(ids_cap - 1);
    while (ids_tab[k].s != NULL) k = (k + 1) & (size_t)(ids_cap - 1);
    ids_tab[k].p = u; ids_tab[k].len = (uint32_t)ulen; ids_tab[k].h = h; ids_tab[k].ok = 0;
    ids_tab[k].s = Py_NewRef(s);
    ids_used++;
    return &ids_tab[k];
}

/* ids_forget() -> None: empty the table of ids (tests: the decoders give the same
 * strings from an empty table). */
static PyObject *ids_forget(PyObject *self, PyObject *noargs) {
    ids_clear();
    Py_RETURN_NONE;
}

/* columns_raw(raws, valid_ids, state_of, now, max_future, loads) -> columns or None:
 * ``columns(list(map(loads, raws)), ...)`` without the dicts for plain messages; None
 * also when orjson rejects a message (the caller then decodes message by message). */
static PyObject *columns_raw(PyObject *self, PyObject *args) {
    PyObject *raws, *valid, *state_of, *loads;
    double now, max_future;
    if (!PyArg_ParseTuple(args, "O!O!O!ddO", &PyList_Type, &raws, &PySet_Type, &valid,
                          &PyDict_Type, &state_of, &now, &max_future, &loads))
        return NULL;
    PyObject *names[3] = {PyDict_GetItemString(state_of, "up"),
                          PyDict_GetItemString(state_of, "maintenance"),
                          PyDict_GetItemString(state_of, "down")};
    if (!names[0] || !names[1] || !names[2]) {
        PyErr_SetString(PyExc_ValueError, "state_of must map up, maintenance and down");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(raws);
    PyObject *comps = PyList_New(n), *states = PyList_New(n), *tss = PyList_New(n);
    PyObject *one = NULL;
    if (!comps || !states || !tss) goto fail;
    double mx = -INFINITY;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *raw = PyList_GET_ITEM(raws, i);
        Plain pl = {NULL, 0, 0, 0.0};
        PyObject *comp, *st, *ts;
        if (PyBytes_CheckExact(raw) && scan_plain(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), &pl)) {
            uint64_t h = id_hash(pl.comp, pl.comp_len);
            IdSeen *seen = id_find(pl.comp, pl.comp_len, h);
            if (seen != NULL && seen->ok) {
                /* found well formed before: a property of its bytes, which the set of
                 * well-formed ids only caches (it never forgets one in a worker) */
                comp = Py_NewRef(seen->s);
            } else {
                comp = seen != NULL ? Py_NewRef(seen->s) : PyUnicode_FromStringAndSize(pl.comp, pl.comp_len);
                if (comp == NULL) goto fail;
                int has = PySet_Contains(valid, comp);
                if (has <= 0) { Py_DECREF(comp); if (has < 0) goto fail; goto plain_not; }
                if (seen == NULL) {
                    PyUnicode_InternInPlace(&comp);
                    seen = id_keep(comp, h);
                    if (seen == NULL && PyErr_Occurred()) { Py_DECREF(comp); goto fail; }
                }
                if (seen != NULL) seen->ok = 1;
            }
            st = names[pl.state];
            Py_INCREF(st);
            ts = PyFloat_FromDouble(pl.ts);
            if (ts == NULL) { Py_DECREF(comp); Py_DECREF(st); goto fail; }
            if (pl.ts > mx) mx = pl.ts;
        } else {
            /* orjson and the dict checks of columns(), for this one message */
            PyObject *obj = PyObject_CallOneArg(loads, raw);
            if (obj == NULL) {
                /* orjson.JSONDecodeError is a ValueError: the caller decodes one by one */
                if (PyErr_ExceptionMatches(PyExc_ValueError)) { PyErr_Clear(); goto plain_not; }
                goto fail;
            }
            Py_XSETREF(one, PyList_New(1));
            if (one == NULL) { Py_DECREF(obj); goto fail; }
            PyList_SET_ITEM(one, 0, obj);
            PyObject *argv = Py_BuildValue("(OOOdd)", one, valid, state_of, now, max_future);
            if (argv == NULL) goto fail;
            PyObject *cols = columns(NULL, argv);
            Py_DECREF(argv);
            if (cols == NULL) goto fail;
            if (cols == Py_None) { Py_DECREF(cols); goto plain_not; }
            comp = PyList_GET_ITEM(PyTuple_GET_ITEM(cols, 0), 0);
            st = PyList_GET_ITEM(PyTuple_GET_ITEM(cols, 1), 0);
            ts = PyList_GET_ITEM(PyTuple_GET_ITEM(cols, 2), 0);
            Py_INCREF(comp); Py_INCREF(st); Py_INCREF(ts);
            Py_DECREF(cols);
            double t = PyFloat_AS_DOUBLE(ts);
            if (t > mx) mx = t;
        }
        PyList_SET_ITEM(comps, i, comp);
        PyList_SET_ITEM(states, i, st);
        PyList_SET_ITEM(tss, i, ts);
    }
    Py_XDECREF(one);
    if (n && mx - now > max_future) goto plain_not;
    {
        PyObject *out = PyTuple_Pack(3, comps, states, tss);
        Py_DECREF(comps); Py_DECREF(states); Py_DECREF(tss);
        return out;
    }
plain_not:
    Py_XDECREF(one);
    Py_XDECREF(comps); Py_XDECREF(states); Py_XDECREF(tss);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(one);
    Py_XDECREF(comps); Py_XDECREF(states); Py_XDECREF(tss);
    return NULL;
}

/* ---- the components checkpoint: ComponentTracker.small_record in bulk --------------- */

/* Appends ``text`` (``n`` bytes) at *w. */
#define PUT(w, text, n) (memcpy((w), (text), (n)), (w) += (n))

/* The record ``tracker.small_record(limit)`` makes, made here: a new reference to the
 * bytes, to None (not small), or ``NotImplemented`` when this one is not plain (not
 * the registered ComponentTracker, columns that are not arrays, a newest time that is
 * not a float; the caller then calls the method). The header is the one orjson writes
 * for the method's dict: the id as it is when it is printable ASCII without a quote or
 * backslash (orjson writes those so), else ``dumps(id)``; the time ``dumps(newest)``
 * (orjson's own digits: Python's repr took ~5,600 instructions a float), null for -inf.
 * Layout as streams/record.py ``join`` writes it. */
static PyObject *small_record_one(PyObject *tr, Py_ssize_t limit, PyObject *magic, PyObject *dumps) {
#if !PY_LITTLE_ENDIAN
    Py_RETURN_NOTIMPLEMENTED;  /* the method says None there */
#endif
    if (Py_TYPE(tr) != CT_HISTORY.type || Py_TYPE(tr) != CT_COMPONENT.type
        || Py_TYPE(tr) != CT_NEWEST.type)
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *h = *(PyObject **)((char *)tr + CT_HISTORY.off);
    PyObject *comp = *(PyObject **)((char *)tr + CT_COMPONENT.off);
    PyObject *newest = *(PyObject **)((char *)tr + CT_NEWEST.off);
    if (h == NULL || comp == NULL || newest == NULL || !PyUnicode_CheckExact(comp)
        || !PyFloat_CheckExact(newest))
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *tags = slot_get(h, &TL_TAGS);
    if (tags == NULL) return NULL;
    Py_ssize_t ntags = PyObject_Size(tags);
    Py_DECREF(tags);
    if (ntags < 0) return NULL;
    PyObject *ts = slot_get(h, &TL_TS);
    if (ts == NULL) return NULL;
    PyObject *st = slot_get(h, &TL_ST);
    if (st == NULL) { Py_DECREF(ts); return NULL; }
    PyObject *out = NULL, *cjson = NULL, *njson = NULL;
    if (!arr_is(ts, 'd') || !arr_is(st, 'b')) { out = Py_NewRef(Py_NotImplemented); goto done; }
    Py_ssize_t n = Py_SIZE(ts), nst = Py_SIZE(st);
    if (ntags > 1 || 9 * n >= limit) { out = Py_NewRef(Py_None); goto done; }
    const char *c = NULL;
    Py_ssize_t clen = 0;
    int plain = PyUnicode_IS_COMPACT_ASCII(comp);
    if (plain) {
        c = (const char *)PyUnicode_DATA(comp);
        clen = PyUnicode_GET_LENGTH(comp);
        for (Py_ssize_t i = 0; i < clen && plain; i++) plain = plain_byte[(unsigned char)c[i]];
    }
    if (!plain) {
        if ((cjson = PyObject_CallOneArg(dumps, comp)) == NULL) goto done;
        if (!PyBytes_Check(cjson) || PyBytes_GET_SIZE(cjson) < 2) {
            PyErr_SetString(PyExc_TypeError, "dumps must return the JSON text as bytes");
            goto done;
        }
        c = PyBytes_AS_STRING(cjson) + 1;  /* between its quotes */
        clen = PyBytes_GET_SIZE(cjson) - 2;
    }
    const char *num = "null";
    Py_ssize_t numlen = 4;
    if (!(PyFloat_AS_DOUBLE(newest) == -INFINITY)) {
        if ((njson = PyObject_CallOneArg(dumps, newest)) == NULL) goto done;
        if (!PyBytes_Check(njson)) {
            PyErr_SetString(PyExc_TypeError, "dumps must return the JSON text as bytes");
            goto done;
        }
        num = PyBytes_AS_STRING(njson);
        numlen = PyBytes_GET_SIZE(njson);
    }
    char count[24];
    int countlen = snprintf(count, sizeof count, "%zd", n);
    /* {"c":"<id>","n":<num>,"h":{"n":<count>,"o":0}} */
    Py_ssize_t head = 6 + clen + 6 + numlen + 10 + countlen + 8;
    Py_ssize_t mlen = PyBytes_GET_SIZE(magic);
    if (head > 0xffffffffLL) { out = Py_NewRef(Py_NotImplemented); goto done; }
    out = PyBytes_FromStringAndSize(NULL, mlen + 4 + head + 8 * n + nst);
    if (out == NULL) goto done;
    char *w = PyBytes_AS_STRING(out);
    PUT(w, PyBytes_AS_STRING(magic), mlen);
    uint32_t hl = (uint32_t)head;
    PUT(w, &hl, 4);  /* little-endian: this path is compiled for such machines only */
    PUT(w, "{\"c\":\"", 6);
    PUT(w, c, clen);
    PUT(w, "\",\"n\":", 6);
    PUT(w, num, numlen);
    PUT(w, ",\"h\":{\"n\":", 10);
    PUT(w, count, countlen);
    PUT(w, ",\"o\":0}}", 8);
    if (n) PUT(w, ((ArrayObj *)ts)->ob_item, 8 * n);
    if (nst) PUT(w, ((ArrayObj *)st)->ob_item, nst);
done:
    Py_DECREF(ts); Py_DECREF(st);
    Py_XDECREF(cjson); Py_XDECREF(njson);
    return out;
}

/* small_records(trackers, limit, magic, dumps) -> list: ``[t.small_record(limit) for t
 * in trackers]``, the plain ones made here (small_record_one; ``dumps`` is orjson.dumps,
 * as the method's). A components checkpoint in a storm over many components writes one
 * per tracker: the method's header dict, orjson and bytes.join were ~3 µs a tracker,
 * half of the checkpoint. */
static PyObject *small_records(PyObject *self, PyObject *args) {
    PyObject *trackers, *magic, *dumps;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "O!nO!O", &PyList_Type, &trackers, &limit, &PyBytes_Type, &magic,
                          &dumps))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(trackers);
    PyObject *out = PyList_New(n), *limit_obj = NULL;
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *tr = PyList_GET_ITEM(trackers, i);
        Py_INCREF(tr);
        PyObject *rec = small_record_one(tr, limit, magic, dumps);
        if (rec == Py_NotImplemented) {
            Py_DECREF(rec);
            if (limit_obj == NULL && (limit_obj = PyLong_FromSsize_t(limit)) == NULL) rec = NULL;
            else rec = PyObject_CallMethodOneArg(tr, s_small_record, limit_obj);
        }
        Py_DECREF(tr);
        if (rec == NULL) { Py_DECREF(out); Py_XDECREF(limit_obj); return NULL; }
        PyList_SET_ITEM(out, i, rec);
    }
    Py_XDECREF(limit_obj);
    return out;
}
#undef PUT

/* small_writes(keys, objs, wholes, i, chunks, store, cache, chunk, head, out) -> int:
 * TrackerTable._write_partition's path for small objects, from key ``i`` on, up to the
 * first key that does not take it (its index is returned; len(keys) when all did). A key
 * takes it when its whole record ``wholes[i]`` is not None, at most ``chunk`` bytes, the
 * key is not stored in parts (``chunks``) and what ``store`` (a dict, or a subclass that
 * reads and writes as dict does: the caller's business) holds under it is not a head of
 * patches (does not start with ``head``): then the record is stored, the
 * cache entry becomes ``(record, obj)`` (off the cyclic collector's lists, as _entry
 * makes it) and ``(key as UTF-8, record)`` is appended to ``out``. */
static PyObject *small_writes(PyObject *self, PyObject *args) {
    PyObject *keys, *objs, *wholes, *chunks, *store, *cache, *head, *out;
    Py_ssize_t i, chunk;
    if (!PyArg_ParseTuple(args, "O!O!O!nO!O!O!nO!O!", &PyList_Type, &keys, &PyList_Type, &objs,
                          &PyList_Type, &wholes, &i, &PyDict_Type, &chunks, &PyDict_Type, &store,
                          &PyDict_Type, &cache, &chunk, &PyBytes_Type, &head, &PyList_Type, &out))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(keys);
    if (PyList_GET_SIZE(objs) != n || PyList_GET_SIZE(wholes) != n) {
        PyErr_SetString(PyExc_ValueError, "keys, objs and wholes differ in length");
        return NULL;
    }
    const char *hp = PyBytes_AS_STRING(head);
    Py_ssize_t hn = PyBytes_GET_SIZE(head);
    for (i = i < 0 ? 0 : i; i < n; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i), *whole = PyList_GET_ITEM(wholes, i);
        if (!PyUnicode_CheckExact(key) || !PyBytes_CheckExact(whole) || PyBytes_GET_SIZE(whole) > chunk)
            break;
        int in = PyDict_Contains(chunks, key);
        if (in < 0) return NULL;
        if (in) break;
        PyObject *before = PyDict_GetItemWithError(store, key);  /* borrowed */
        if (before == NULL && PyErr_Occurred()) return NULL;
        if (before != NULL) {
            /* bytes.startswith(head); anything else is the Python path's business */
            if (!PyBytes_Check(before)) break;
            if (PyBytes_GET_SIZE(before) >= hn && memcmp(PyBytes_AS_STRING(before), hp, (size_t)hn) == 0)
                break;
        }
        PyObject *entry = PyTuple_Pack(2, whole, PyList_GET_ITEM(objs, i));
        if (entry == NULL) return NULL;
        PyObject_GC_UnTrack(entry);
        PyObject *kb = PyUnicode_AsUTF8String(key), *pair = NULL;
        if (kb != NULL) {
            pair = PyTuple_Pack(2, kb, whole);
            Py_DECREF(kb);
            if (pair != NULL) PyObject_GC_UnTrack(pair);  /* bytes only: no cycle */
        }
        int rc = pair == NULL ? -1 : PyDict_SetItem(store, key, whole);
        if (rc == 0) rc = PyDict_SetItem(cache, key, entry);
        if (rc == 0) rc = PyList_Append(out, pair);
        Py_DECREF(entry); Py_XDECREF(pair);
        if (rc < 0) return NULL;
    }
    return PyLong_FromSsize_t(i);
}

/* in_time_order(segs) -> bool: every segment open-ended and the starts never decrease
 * (then ``service.in_time_order`` has nothing to sort). */
static PyObject *is_in_time_order(PyObject *self, PyObject *arg) {
    if (!PyList_CheckExact(arg)) Py_RETURN_FALSE;
    Py_ssize_t n = PyList_GET_SIZE(arg);
    double prev = -INFINITY;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *seg = PyList_GET_ITEM(arg, i);
        if (!PyTuple_Check(seg) || PyTuple_GET_SIZE(seg) != 4) Py_RETURN_FALSE;
        PyObject *s = PyTuple_GET_ITEM(seg, 1), *e = PyTuple_GET_ITEM(seg, 2);
        if (!PyFloat_CheckExact(s) || !PyFloat_CheckExact(e)) Py_RETURN_FALSE;
        double start = PyFloat_AS_DOUBLE(s);
        if (PyFloat_AS_DOUBLE(e) != INFINITY || !(start >= prev)) Py_RETURN_FALSE;
        prev = start;
    }
    Py_RETURN_TRUE;
}

/* ---- the segments wire form (agents/worker/segwire.py) ------------------------------------ */

/* encode_segments(items) -> (n, body, ids, sizes): the columns of segwire.encode_many
 * for ``items`` = [(service, [(component, start, end, state), ...]), ...]: ``body`` holds
 * the segment count of each service (uint32), then every start and every end (float64)
 * and every state (uint8), in the host's byte order; ``ids`` the component ids joined by
 * newlines, in UTF-8; ``n`` the segments; ``sizes`` per service the bytes of its ids and
 * one newline each (uint32, host order), so a message too large is cut without reading
 * the ids again. */
#define ENC_AHEAD 16

static PyObject *encode_segments(PyObject *self, PyObject *items) {
    if (!PyList_CheckExact(items)) {
        PyErr_SetString(PyExc_TypeError, "items must be a list");
        return NULL;
    }
    /* One pass over the segments (a first pass for the ids' length read every tuple
     * and id twice, from memory: a fetch's segments are far larger than the caches);
     * the ids go to a buffer that grows. */
    Py_ssize_t k = PyList_GET_SIZE(items), n = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2
                || !PyList_CheckExact(PyTuple_GET_ITEM(item, 1))) {
            PyErr_SetString(PyExc_TypeError, "an item is a (service, list of segments) pair");
            return NULL;
        }
        Py_ssize_t m = PyList_GET_SIZE(PyTuple_GET_ITEM(item, 1));
        if (m > 0xffffffffL) {
            PyErr_SetString(PyExc_ValueError, "too many segments for one service");
            return NULL;
        }
        n += m;
    }
    PyObject *body = PyBytes_FromStringAndSize(NULL, 4 * k + 17 * n);
    PyObject *sizes = PyBytes_FromStringAndSize(NULL, 4 * k);
    size_t cap = (size_t)n * 12 + 64, used = 0;
    char *buf = PyMem_Malloc(cap);
    /* Every segment in order, to load ahead (below). */
    PyObject **flat = PyMem_Malloc(sizeof(PyObject *) * (size_t)(n ? n : 1));
    if (body == NULL || sizes == NULL || buf == NULL || flat == NULL) {
        Py_XDECREF(body); Py_XDECREF(sizes); PyMem_Free(buf); PyMem_Free(flat);
        if (!PyErr_Occurred()) PyErr_NoMemory();
        return NULL;
    }
    Py_ssize_t filled = 0;  /* == n, unless a list grew (it cannot: no Python code ran) */
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *segs = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 1);
        Py_ssize_t m = PyList_GET_SIZE(segs);
        if (filled + m > n) break;
        memcpy(flat + filled, ((PyListObject *)segs)->ob_item, sizeof(PyObject *) * (size_t)m);
        filled += m;
    }
    char *b = PyBytes_AS_STRING(body);
    char *sz = PyBytes_AS_STRING(sizes);
    uint32_t *counts = (uint32_t *)b;  /* bytes objects are aligned for any type */
    double *starts = (double *)(b + 4 * k), *ends = starts + n;
    unsigned char *states = (unsigned char *)(ends + n);
    PyObject *ids;
    Py_ssize_t q = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *segs = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 1);
        Py_ssize_t m = PyList_GET_SIZE(segs);
        if (q + m > n) {  /* a list grew meanwhile (it cannot here: no Python code runs) */
            PyErr_SetString(PyExc_RuntimeError, "segments changed while encoded");
            goto fail;
        }
        uint32_t c = (uint32_t)m;
        memcpy(counts + i, &c, 4);
        size_t from = used;
        Py_ssize_t q0 = q;
        for (Py_ssize_t j = 0; j < m; j++, q++) {
            /* A fetch's segments are far larger than the caches and are read here in
             * another order than they were made (by service): each tuple, its id and
             * its start were a miss. Loaded ahead: the tuple ENC_AHEAD segments on,
             * and what the tuple half as far on points to (its header was loaded
             * then). A load ahead never faults, and the tuple's type is checked
             * before its items are read. */
            if (q + ENC_AHEAD < filled) __builtin_prefetch(flat[q + ENC_AHEAD]);
            if (q + ENC_AHEAD / 2 < filled) {
                PyObject *t = flat[q + ENC_AHEAD / 2];
                if (PyTuple_CheckExact(t) && PyTuple_GET_SIZE(t) == 4) {
                    __builtin_prefetch(PyTuple_GET_ITEM(t, 0));
                    __builtin_prefetch((char *)PyTuple_GET_ITEM(t, 0) + 64);
                    __builtin_prefetch(PyTuple_GET_ITEM(t, 1));
                }
            }
            PyObject *seg = PyList_GET_ITEM(segs, j);
            if (!PyTuple_Check(seg) || PyTuple_GET_SIZE(seg) != 4
                    || !PyUnicode_Check(PyTuple_GET_ITEM(seg, 0))) {
                PyErr_SetString(PyExc_TypeError, "a segment is a (component, start, end, state) tuple");
                goto fail;
            }
            PyObject *o0 = PyTuple_GET_ITEM(seg, 1), *o1 = PyTuple_GET_ITEM(seg, 2);
            if (!PyFloat_CheckExact(o0) || !PyFloat_CheckExact(o1)
                    || !PyLong_CheckExact(PyTuple_GET_ITEM(seg, 3)))
                filled = 0;  /* Python code may run below: read no segment ahead from now on */
            double t0 = PyFloat_CheckExact(o0) ? PyFloat_AS_DOUBLE(o0) : PyFloat_AsDouble(o0);
            double t1 = PyFloat_CheckExact(o1) ? PyFloat_AS_DOUBLE(o1) : PyFloat_AsDouble(o1);
            long st = PyLong_AsLong(PyTuple_GET_ITEM(seg, 3));
            if (PyErr_Occurred()) goto fail;
            if (st < 0 || st > 2) {
                PyErr_Format(PyExc_ValueError, "state %ld is not 0, 1 or 2", st);
                goto fail;
            }
            memcpy(starts + q, &t0, 8);
            memcpy(ends + q, &t1, 8);
            states[q] = (unsigned char)st;
            Py_ssize_t len;
            const char *id = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(seg, 0), &len);
            if (id == NULL) goto fail;
            if (used + (size_t)len + 1 > cap) {
                size_t grown = (cap + (size_t)len + 1) * 2;
                char *more = PyMem_Realloc(buf, grown);
                if (more == NULL) { PyErr_NoMemory(); goto fail; }
                buf = more;
                cap = grown;
            }
            if (q) buf[used++] = '\n';
            memcpy(buf + used, id, (size_t)len);
            used += (size_t)len;
        }
        /* the newline before the first id stands for the one after the last */
        uint32_t idbytes = (uint32_t)(used - from) + (q0 == 0 && m > 0);
        memcpy(sz + 4 * i, &idbytes, 4);
    }
    if (q != n) {
        PyErr_SetString(PyExc_RuntimeError, "segments changed while encoded");
        goto fail;
    }
    ids = PyBytes_FromStringAndSize(buf, (Py_ssize_t)used);
    PyMem_Free(buf);
    PyMem_Free(flat);
    if (ids == NULL) { Py_DECREF(body); Py_DECREF(sizes); return NULL; }
    return Py_BuildValue("(nNNN)", n, body, ids, sizes);
fail:
    Py_DECREF(body);
    Py_DECREF(sizes);
    PyMem_Free(buf);
    PyMem_Free(flat);
    return NULL;
}

/* segment_ids(buffer, n) -> list: the ``n`` component ids of a segments message (UTF-8,
 * joined by newlines) as interned strings. A string made, hashed and interned per segment
 * cost more than applying it, so each id's string is kept in the table of ids above,
 * which lives across messages. At 20,000 components most
 * ids of a message are new to it, and decoding and interning each once per message was
 * 6% of both stages. ValueError unless there are exactly ``n`` ids, none empty, all
 * UTF-8. */
static PyObject *segment_ids(PyObject *self, PyObject *args) {
    Py_buffer v;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "y*n", &v, &n)) return NULL;
    if (n < 1) {
        PyBuffer_Release(&v);
        PyErr_SetString(PyExc_ValueError, "a segments message holds at least one id");
        return NULL;
    }
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        PyBuffer_Release(&v);
        return NULL;
    }
    Py_ssize_t count = 0;
    const char *p = v.buf, *end = p + v.len;
    for (;;) {
        const char *q = memchr(p, '\n', (size_t)(end - p));
        if (q == NULL) q = end;
        Py_ssize_t len = q - p;
        if (len == 0 || count == n) {
            PyErr_SetString(PyExc_ValueError, len ? "more component ids than segments"
                                                  : "an empty component id");
            goto fail;
        }
        uint64_t h = id_hash(p, len);
        IdSeen *seen = id_find(p, len, h);
        PyObject *s;
        if (seen != NULL) {
            s = Py_NewRef(seen->s);
        } else {
            s = PyUnicode_DecodeUTF8(p, len, NULL);
            if (s == NULL) goto fail;
            PyUnicode_InternInPlace(&s);
            if (id_keep(s, h) == NULL && PyErr_Occurred()) { Py_DECREF(s); goto fail; }
        }
        PyList_SET_ITEM(out, count, s);
        count++;
        if (q == end) break;
        p = q + 1;
    }
    if (count != n) {
        PyErr_SetString(PyExc_ValueError, "fewer component ids than segments");
        goto fail;
    }
    PyBuffer_Release(&v);
    return out;
fail:
    /* items [count, n) are still NULL: list_dealloc skips them */
    Py_DECREF(out);
    PyBuffer_Release(&v);
    return NULL;
}

/* time_ordered(comps, starts, states) -> iterator or None: the open-ended segments given
 * as columns (lists of ids and of float starts; states as bytes or a list of ints), as
 * (component, start, inf, state) tuples sorted by start, stably (each component keeps
 * its own order); None when the starts are in order already. For
 * service.in_time_order_columns, without a Python call per segment. The tuples are made
 * one at a time as apply_many takes them (and freed before the next): a list of them
 * all was a GC-tracked tuple per segment alive at once, so a fetch's stage 2 set off
 * young collections that walked them. */
typedef struct { double t; Py_ssize_t i; } Keyed;

static int keyed_cmp(const void *a, const void *b) {
    const Keyed *x = a, *y = b;
    if (x->t < y->t) return -1;
    if (x->t > y->t) return 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* Sort keys[0 .. n) by t, stably: the order qsort with keyed_cmp gives (no NaN among
 * them; the caller checks). A service's segments of a fetch come as a few ascending runs
 * (one per stage-1 partition and message), so the runs are merged pairwise, level by
 * level: n comparisons of doubles a level and log2(runs) levels, where qsort called the
 * comparator n log2(n) times. 0, or -1 with MemoryError. */
static int sort_runs(Keyed *keys, Py_ssize_t n) {
    Py_ssize_t cap = 16, nb = 0;
    Py_ssize_t *b = PyMem_Malloc((size_t)cap * sizeof(Py_ssize_t));
    if (b == NULL) { PyErr_NoMemory(); return -1; }
    b[nb++] = 0;
    for (Py_ssize_t i = 1; i <= n; i++) {
        if (i < n && keys[i].t >= keys[i - 1].t) continue;
        if (nb == cap) {
            Py_ssize_t *grown = PyMem_Realloc(b, (size_t)(cap * 2) * sizeof(Py_ssize_t));
            if (grown == NULL) { PyMem_Free(b); PyErr_NoMemory(); return -1; }
            b = grown;
            cap *= 2;
        }
        b[nb++] = i;  /* a run ends here (the last bound is n) */
    }
    Keyed *tmp = nb > 2 ? PyMem_Malloc((size_t)n * sizeof(Keyed)) : NULL;
    if (nb > 2 && tmp == NULL) { PyMem_Free(b); PyErr_NoMemory(); return -1; }
    while (nb > 2) {  /* runs: [b[r], b[r + 1]) for r < nb - 1 */
        Py_ssize_t w = 0;
        for (Py_ssize_t r = 0; r + 1 < nb; r += 2) {
            Py_ssize_t lo = b[r], mid = b[r + 1];
            if (r + 2 < nb) {
                Py_ssize_t hi = b[r + 2], x = lo, y = mid, o = lo;
                while (x < mid && y < hi)  /* ties to the left run: stable */
                    tmp[o++] = keys[y].t < keys[x].t ? keys[y++] : keys[x++];
                while (x < mid) tmp[o++] = keys[x++];
                while (y < hi) tmp[o++] = keys[y++];
                memcpy(keys + lo, tmp + lo, (size_t)(hi - lo) * sizeof(Keyed));
            }
            b[w++] = lo;
        }
        b[w++] = n;
        nb = w;
    }
    PyMem_Free(tmp);
    PyMem_Free(b);
    return 0;
}

typedef struct {
    PyObject_HEAD
    PyObject *comps, *starts, *states;  /* the columns (states: bytes or a list) */
    Keyed *keys;                         /* the order */
    Py_ssize_t n, q;                     /* length, next position */
} OrderedIter;

static void ordered_dealloc(OrderedIter *it) {
    Py_XDECREF(it->comps);
    Py_XDECREF(it->starts);
    Py_XDECREF(it->states);
    PyMem_Free(it->keys);
    PyObject_Free(it);
}

static PyObject *ordered_next(OrderedIter *it) {
    if (it->q >= it->n) return NULL;
    Py_ssize_t i = it->keys[it->q++].i;
    /* the columns are the caller's lists: read them checked, in case they changed */
    if (i >= PyList_GET_SIZE(it->comps) || i >= PyList_GET_SIZE(it->starts)) {
        PyErr_SetString(PyExc_RuntimeError, "segment columns changed while ordered");
        return NULL;
    }
    PyObject *st;
    if (PyBytes_CheckExact(it->states)) {
        st = STATE_INT[(unsigned char)PyBytes_AS_STRING(it->states)[i]];  /* checked at start */
    } else {
        if (i >= PyList_GET_SIZE(it->states)) {
            PyErr_SetString(PyExc_RuntimeError, "segment columns changed while ordered");
            return NULL;
        }
        st = PyList_GET_ITEM(it->states, i);
    }
    return PyTuple_Pack(4, PyList_GET_ITEM(it->comps, i), PyList_GET_ITEM(it->starts, i), INF_obj, st);
}

static PyObject *ordered_length_hint(OrderedIter *it, PyObject *unused) {
    return PyLong_FromSsize_t(it->n - it->q);
}

static PyMethodDef ordered_methods[] = {
    {"__length_hint__", (PyCFunction)ordered_length_hint, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject OrderedIter_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "streams._native.ordered_segments",
    .tp_basicsize = sizeof(OrderedIter),
    .tp_dealloc = (destructor)ordered_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)ordered_next,
    .tp_methods = ordered_methods,
};

static PyObject *time_ordered(PyObject *self, PyObject *args) {
    PyObject *comps, *starts, *states;
    if (!PyArg_ParseTuple(args, "O!O!O", &PyList_Type, &comps, &PyList_Type, &starts, &states))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(comps);
    int bytes = PyBytes_CheckExact(states);
    if (PyList_GET_SIZE(starts) != n || (bytes ? PyBytes_GET_SIZE(states) : (PyList_CheckExact(states)
            ? PyList_GET_SIZE(states) : -1)) != n) {
        PyErr_SetString(PyExc_ValueError, "columns of different lengths (or states not bytes or a list)");
        return NULL;
    }
    Keyed *keys = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(Keyed));
    if (keys == NULL) return PyErr_NoMemory();
    int sorted = 1, nan = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double t = PyFloat_AsDouble(PyList_GET_ITEM(starts, i));
        if (t == -1.0 && PyErr_Occurred()) { PyMem_Free(keys); return NULL; }
        if (i && !(t >= keys[i - 1].t)) sorted = 0;
        if (t != t) nan = 1;
        keys[i].t = t;
        keys[i].i = i;
    }
    if (sorted) { PyMem_Free(keys); Py_RETURN_NONE; }
    if (bytes) {  /* before any segment is applied, as when the tuples were made at once */
        const unsigned char *sb = (const unsigned char *)PyBytes_AS_STRING(states);
        for (Py_ssize_t i = 0; i < n; i++)
            if (sb[i] > 2) {
                PyErr_Format(PyExc_ValueError, "state %d is not 0, 1 or 2", (int)sb[i]);
                PyMem_Free(keys);
                return NULL;
            }
    }
    if (nan) qsort(keys, (size_t)n, sizeof(Keyed), keyed_cmp);
    else if (sort_runs(keys, n) < 0) { PyMem_Free(keys); return NULL; }
    OrderedIter *it = PyObject_New(OrderedIter, &OrderedIter_Type);
    if (it == NULL) { PyMem_Free(keys); return NULL; }
    Py_INCREF(comps); it->comps = comps;
    Py_INCREF(starts); it->starts = starts;
    Py_INCREF(states); it->states = states;
    it->keys = keys;
    it->n = n;
    it->q = 0;
    return (PyObject *)it;
}

/* apply_columns(tracker, comps, starts, states, model) -> bool: apply_many of the
 * open-ended segments given as columns (a list of ids, the starts as array('d') or a
 * list of floats, the states as bytes) in time order, as service.in_time_order_columns
 * orders them (sorted by start, stably), without a tuple or a float object a segment.
 * False, with nothing applied, when a start is NaN (the caller takes the general path). */
static PyObject *apply_cols(PyObject *tracker, PyObject *comps, PyObject *starts, PyObject *states,
                            PyObject *model);

static PyObject *svc_apply_columns(PyObject *self, PyObject *args) {
    PyObject *tracker, *comps, *starts, *states, *model;
    if (!PyArg_ParseTuple(args, "OO!OO!O", &tracker, &PyList_Type, &comps, &starts,
                          &PyBytes_Type, &states, &model))
        return NULL;
    return apply_cols(tracker, comps, starts, states, model);
}

/* svc_apply_columns after its argument checks (``comps`` a list, ``states`` bytes):
 * True, False (a start is NaN: nothing applied), or NULL with an exception. */
static PyObject *apply_cols(PyObject *tracker, PyObject *comps, PyObject *starts, PyObject *states,
                            PyObject *model) {
    Py_ssize_t n = PyList_GET_SIZE(comps);
    if (PyBytes_GET_SIZE(states) != n) {
        PyErr_SetString(PyExc_ValueError, "columns of different lengths");
        return NULL;
    }
    Keyed *keys = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(Keyed));
    if (keys == NULL) return PyErr_NoMemory();
    if (PyList_CheckExact(starts)) {
        if (PyList_GET_SIZE(starts) != n) {
            PyMem_Free(keys);
            PyErr_SetString(PyExc_ValueError, "columns of different lengths");
            return NULL;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            keys[i].t = PyFloat_AsDouble(PyList_GET_ITEM(starts, i));
            if (keys[i].t == -1.0 && PyErr_Occurred()) { PyMem_Free(keys); return NULL; }
        }
    } else {
        Py_buffer v;
        if (col_view(starts, &v, 'd') < 0) { PyMem_Free(keys); return NULL; }
        if (v.len != n * (Py_ssize_t)sizeof(double)) {
            PyBuffer_Release(&v);
            PyMem_Free(keys);
            PyErr_SetString(PyExc_ValueError, "columns of different lengths");
            return NULL;
        }
        const double *sv = v.buf;
        for (Py_ssize_t i = 0; i < n; i++) keys[i].t = sv[i];
        PyBuffer_Release(&v);
    }
    int sorted = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        double t = keys[i].t;
        keys[i].i = i;
        if (t != t) { PyMem_Free(keys); Py_RETURN_FALSE; }
        if (i && t < keys[i - 1].t) sorted = 0;
    }
    /* every state checked before any segment is applied, as time_ordered does */
    const unsigned char *sb = (const unsigned char *)PyBytes_AS_STRING(states);
    for (Py_ssize_t i = 0; i < n; i++)
        if (sb[i] > 2) {
            PyErr_Format(PyExc_ValueError, "state %d is not 0, 1 or 2", (int)sb[i]);
            PyMem_Free(keys);
            return NULL;
        }
    if (!sorted && sort_runs(keys, n) < 0) { PyMem_Free(keys); return NULL; }
    PyObject *result = NULL;
    Applier a;
    if (ap_open(&a, tracker, model) < 0) goto done;
    for (Py_ssize_t q = 0; q < n; q++) {
        Py_ssize_t i = keys[q].i;
        /* the caller's list: read checked, in case a callback changed it */
        if (i >= PyList_GET_SIZE(comps)) {
            PyErr_SetString(PyExc_RuntimeError, "segment columns changed while applied");
            goto done;
        }
        PyObject *comp = PyList_GET_ITEM(comps, i);
        Py_INCREF(comp);
        int rc = ap_segment(&a, comp, keys[q].t, NULL, INFINITY, INF_obj, NULL, sb[i]);
        Py_DECREF(comp);
        if (rc < 0) goto done;
    }
    if (ap_close(&a) < 0) goto done;
    result = Py_True;
    Py_INCREF(result);
done:
    ap_free(&a);
    PyMem_Free(keys);
    return result;
}

/* split_columns(names, counts, comps, starts, ends, states, cls) -> list: what
 * ``segwire.decode_many`` returns of a message of several services, from its columns
 * (checked by the caller): ``(names[i], cls(comps[a:b], starts[a:b], ends[a:b] or None,
 * states[a:b]))`` for each service, ``counts[i]`` segments from ``a``. Why: at 20,000
 * components a fetch's messages hold 4,000 services of a few segments each, and the
 * slices and the NamedTuple made in a Python loop were ~5% of both stages. ``cls`` (the
 * segments' Columns, a tuple subclass without fields of its own) is filled as
 * tuple.__new__ fills it; any other class is called. */
static PyObject *split_columns(PyObject *self, PyObject *args) {
    PyObject *names, *counts, *comps, *starts, *ends, *states, *cls;
    if (!PyArg_ParseTuple(args, "O!OO!OOO!O", &PyList_Type, &names, &counts, &PyList_Type, &comps,
                          &starts, &ends, &PyBytes_Type, &states, &cls))
        return NULL;
    Py_ssize_t k = PyList_GET_SIZE(names), n = PyList_GET_SIZE(comps);
    PyObject *seq = PySequence_Fast(counts, "counts must be a sequence");
    if (seq == NULL) return NULL;
    if (PySequence_Fast_GET_SIZE(seq) != k || PyBytes_GET_SIZE(states) != n
            || PyObject_Length(starts) != n || (ends != Py_None && PyObject_Length(ends) != n)) {
        Py_DECREF(seq);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "columns of different lengths");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    int fill = PyType_Check(cls) && PyType_IsSubtype(type, &PyTuple_Type)
               && type->tp_basicsize == PyTuple_Type.tp_basicsize
               && type->tp_itemsize == PyTuple_Type.tp_itemsize && type->tp_alloc != NULL;
    PyObject *out = PyList_New(k);
    if (out == NULL) { Py_DECREF(seq); return NULL; }
    const char *sb = PyBytes_AS_STRING(states);
    Py_ssize_t a = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        Py_ssize_t c = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(seq, i));
        if (c == -1 && PyErr_Occurred()) goto fail;
        if (c <= 0 || c > n - a) {
            PyErr_SetString(PyExc_ValueError, "segment counts do not add up to the columns");
            goto fail;
        }
        PyObject *part[4];
        part[0] = PyList_GetSlice(comps, a, a + c);
        part[1] = PySequence_GetSlice(starts, a, a + c);
        part[2] = ends == Py_None ? Py_NewRef(Py_None) : PySequence_GetSlice(ends, a, a + c);
        part[3] = PyBytes_FromStringAndSize(sb + a, c);
        if (!part[0] || !part[1] || !part[2] || !part[3]) {
            for (int j = 0; j < 4; j++) Py_XDECREF(part[j]);
            goto fail;
        }
        PyObject *cols;
        if (fill) {
            cols = type->tp_alloc(type, 4);
            if (cols != NULL)
                for (int j = 0; j < 4; j++) PyTuple_SET_ITEM(cols, j, part[j]);  /* stolen */
            else
                for (int j = 0; j < 4; j++) Py_DECREF(part[j]);
        } else {
            cols = PyObject_Vectorcall(cls, part, 4, NULL);
            for (int j = 0; j < 4; j++) Py_DECREF(part[j]);
        }
        if (cols == NULL) goto fail;
        PyObject *pair = PyTuple_Pack(2, PyList_GET_ITEM(names, i), cols);
        Py_DECREF(cols);
        if (pair == NULL) goto fail;
        PyList_SET_ITEM(out, i, pair);
        a += c;
    }
    Py_DECREF(seq);
    if (a != n) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_ValueError, "segment counts do not add up to the columns");
        return NULL;
    }
    return out;
fail:
    Py_DECREF(seq);
    Py_DECREF(out);
    return NULL;
}

/* apply_services(items, trackers, models, tracker_cls, created, gone) -> None
 *
 * Stage 2's loop over a fetch's services (``stage2.apply_all``): for each ``(name,
 * (comps, starts, ends, states))`` of ``items``, what ``stage2.apply`` does with the
 * tracker ``trackers[name]`` (one made by ``tracker_cls(name)`` and added there when
 * missing, its name appended to ``created``), the model ``models.get(name)`` (None:
 * the name appended to ``gone``, nothing applied) and
 * ``ServiceTracker.apply_columns``, whose fast path (open-ended columns, a compiled
 * plan) is taken here and every other case is that method called. Why: at 20,000
 * components a fetch applies a few segments to each of 4,000 services, and the Python
 * calls around each service's C loop cost as much as a third of it. ``models`` is
 * ``Catalog.models``: a model it holds is returned by its ``get`` (it holds only
 * models of the catalog's services); any other name is asked of ``get``. */
static PyObject *s_get, *s_bind, *s_apply_columns;
static Slot SV_MODEL;

static PyObject *apply_services(PyObject *self, PyObject *args) {
    PyObject *items, *trackers, *models, *cls, *created, *gone;
    if (!PyArg_ParseTuple(args, "O!O!O!OO!O!", &PyList_Type, &items, &PyDict_Type, &trackers,
                          &PyDict_Type, &models, &cls, &PyList_Type, &created, &PyList_Type, &gone))
        return NULL;
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(items); k++) {
        PyObject *item = PyList_GET_ITEM(items, k);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 || !PyTuple_Check(PyTuple_GET_ITEM(item, 1))
                || PyTuple_GET_SIZE(PyTuple_GET_ITEM(item, 1)) != 4) {
            PyErr_SetString(PyExc_TypeError, "items must be (name, (comps, starts, ends, states))");
            return NULL;
        }
        Py_INCREF(item);  /* held while Python code may run */
        PyObject *name = PyTuple_GET_ITEM(item, 0), *cols = PyTuple_GET_ITEM(item, 1);
        PyObject *model = PyDict_GetItemWithError(models, name), *tracker = NULL, *r = NULL;
        if (model != NULL) {
            Py_INCREF(model);
        } else if (PyErr_Occurred()) {
            goto fail;
        } else {
            model = PyObject_CallMethodOneArg(models, s_get, name);
            if (model == NULL) goto fail;
            if (model == Py_None) {
                Py_DECREF(model);
                int rc = PyList_Append(gone, name);
                Py_DECREF(item);
                if (rc < 0) return NULL;
                continue;
            }
        }
        tracker = PyDict_GetItemWithError(trackers, name);
        if (tracker != NULL) {
            Py_INCREF(tracker);
        } else {
            if (PyErr_Occurred()) goto fail;
            tracker = PyObject_CallOneArg(cls, name);
            if (tracker == NULL || PyDict_SetItem(trackers, name, tracker) < 0
                    || PyList_Append(created, name) < 0)
                goto fail;
        }
        PyObject *comps = PyTuple_GET_ITEM(cols, 0), *starts = PyTuple_GET_ITEM(cols, 1),
                 *ends = PyTuple_GET_ITEM(cols, 2), *states = PyTuple_GET_ITEM(cols, 3);
        if (ends == Py_None && PyList_CheckExact(comps) && PyBytes_CheckExact(states)) {
            PyObject *plan = PyObject_GetAttr(model, s_plan);
            if (plan == NULL) goto fail;
            int planned = plan != Py_None;
            Py_DECREF(plan);
            if (planned) {
                PyObject *bound = slot_get(tracker, &SV_MODEL);
                if (bound == NULL) goto fail;
                Py_DECREF(bound);  /* compared by identity only */
                if (bound != model) {
                    r = PyObject_CallMethodOneArg(tracker, s_bind, model);
                    if (r == NULL) goto fail;
                    Py_DECREF(r);
                }
                r = apply_cols(tracker, comps, starts, states, model);
                if (r == NULL) goto fail;
                int done = r == Py_True;
                Py_DECREF(r);
                if (done) {
                    Py_DECREF(tracker); Py_DECREF(model); Py_DECREF(item);
                    continue;
                }
            }
        }
        {
            PyObject *argv[6] = {tracker, comps, starts, ends, states, model};
            r = PyObject_VectorcallMethod(s_apply_columns, argv, 6, NULL);
            if (r == NULL) goto fail;
            Py_DECREF(r);
        }
        Py_DECREF(tracker); Py_DECREF(model); Py_DECREF(item);
        continue;
    fail:
        Py_XDECREF(tracker); Py_XDECREF(model); Py_DECREF(item);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ``arg``'s buffer into ``v`` if it holds doubles (format "d"); 0, or -1 with TypeError
 * (nothing to release). */
static int get_doubles(PyObject *arg, Py_buffer *v) {
    if (PyObject_GetBuffer(arg, v, PyBUF_FORMAT) < 0) return -1;
    if (v->format == NULL || v->format[0] != 'd' || v->format[1] != 0 || v->len % sizeof(double)) {
        PyBuffer_Release(v);
        PyErr_SetString(PyExc_TypeError, "a buffer of doubles is expected");
        return -1;
    }
    return 0;
}

/* float_min(buffer of doubles) -> float or None: min() of the column (None if empty),
 * without a float object per item: stage 2 marks each service's day rollups dirty from
 * its earliest segment. NaN is never the minimum here (the segments message refuses it). */
static PyObject *float_min(PyObject *self, PyObject *arg) {
    Py_buffer v;
    if (get_doubles(arg, &v) < 0) return NULL;
    const double *a = v.buf;
    Py_ssize_t n = v.len / (Py_ssize_t)sizeof(double);
    if (n == 0) { PyBuffer_Release(&v); Py_RETURN_NONE; }
    double lo = a[0];
    for (Py_ssize_t i = 1; i < n; i++)
        if (a[i] < lo) lo = a[i];
    PyBuffer_Release(&v);
    return PyFloat_FromDouble(lo);
}

/* float_kinds(buffer of doubles) -> (any NaN, any infinity): the checks of a segments
 * message's time columns, without a float object per item. */
static PyObject *float_kinds(PyObject *self, PyObject *arg) {
    Py_buffer v;
    if (get_doubles(arg, &v) < 0) return NULL;
    const double *a = v.buf;
    Py_ssize_t n = v.len / (Py_ssize_t)sizeof(double);
    int nan = 0, inf = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double x = a[i];
        if (x != x) nan = 1;
        else if (x == INFINITY || x == -INFINITY) inf = 1;
    }
    PyBuffer_Release(&v);
    return Py_BuildValue("(OO)", nan ? Py_True : Py_False, inf ? Py_True : Py_False);
}

/* Prefix sums kept at every SUMS_BLOCK-th point of a timeline (Timeline._sums, see
 * streams/timeline.py): per kept point up, down and maintenance seconds before it and the
 * down runs begun at or before it. The sums between are added one by one from the kept
 * ones, in the order the running sum adds them, so they are the same doubles: each step
 * is ``u = u + (p == UP ? dt : 0.0)`` exactly as the Python twins write it. */
#define SUMS_SHIFT 5
#define SUMS_BLOCK (1 << SUMS_SHIFT)
#define SUMS_N 4

typedef struct { double u, d, m, r; } Sums;

/* One step of the running sums from point q - 1 (time *prev, state *p) to point q. */
static inline void sums_step(Sums *a, double t, int s, double *prev, int *p) {
    double dt = t - *prev;
    a->u = a->u + (*p == ST_UP ? dt : 0.0);
    a->d = a->d + (*p == ST_DOWN ? dt : 0.0);
    a->m = a->m + (*p == ST_MAINT ? dt : 0.0);
    if (s == ST_DOWN && *p != ST_DOWN) a->r = a->r + 1.0;
    *prev = t;
    *p = s;
}

/* The three columns as read-only views; 0, or -1 with an exception set. */
static int sums_views(PyObject *ts, PyObject *st, PyObject *sums, Py_buffer *vt, Py_buffer *vs,
                      Py_buffer *vk) {
    if (col_view(ts, vt, 'd') < 0) return -1;
    if (col_view(st, vs, 'b') < 0) { PyBuffer_Release(vt); return -1; }
    if (col_view(sums, vk, 'd') < 0) { PyBuffer_Release(vt); PyBuffer_Release(vs); return -1; }
    if (vt->len / 8 != vs->len) {
        PyBuffer_Release(vt); PyBuffer_Release(vs); PyBuffer_Release(vk);
        PyErr_SetString(PyExc_ValueError, "a timeline's times and states differ in length");
        return -1;
    }
    return 0;
}

/* sums_extend(ts, st, sums) -> bytes: the kept sums of the blocks after the last one in
 * ``sums``, up to the block of the last point (timeline._extend_sums's twin), as the
 * bytes of doubles to append to ``sums``. */
static PyObject *sums_extend(PyObject *self, PyObject *args) {
    PyObject *ts, *st, *sums;
    if (!PyArg_ParseTuple(args, "OOO", &ts, &st, &sums)) return NULL;
    Py_buffer vt, vs, vk;
    if (sums_views(ts, st, sums, &vt, &vs, &vk) < 0) return NULL;
    const double *t = vt.buf;
    const signed char *sv = vs.buf;
    const double *kept = vk.buf;
    Py_ssize_t n = vs.len, k = vk.len / 8 / SUMS_N;
    Py_ssize_t need = n ? (n + SUMS_BLOCK - 1) >> SUMS_SHIFT : 0;
    Py_ssize_t first = k ? k : 0;  /* the first block to write */
    PyObject *out = PyBytes_FromStringAndSize(NULL, (need > first ? need - first : 0) * SUMS_N * 8);
    if (out == NULL || need <= first) goto done;
    double *w = (double *)PyBytes_AS_STRING(out);
    Sums a;
    Py_ssize_t q;
    if (k == 0) {
        a.u = a.d = a.m = 0.0;
        a.r = sv[0] == ST_DOWN ? 1.0 : 0.0;
        *w++ = a.u; *w++ = a.d; *w++ = a.m; *w++ = a.r;
        k = 1;
        q = 0;
    } else {
        const double *b = kept + SUMS_N * (k - 1);
        a.u = b[0]; a.d = b[1]; a.m = b[2]; a.r = b[3];
        q = (k - 1) << SUMS_SHIFT;
    }
    double prev = t[q];
    int p = sv[q];
    for (; k < need; k++) {
        Py_ssize_t end = k << SUMS_SHIFT;
        for (q = q + 1; q <= end; q++) sums_step(&a, t[q], sv[q], &prev, &p);
        q = end;
        *w++ = a.u; *w++ = a.d; *w++ = a.m; *w++ = a.r;
    }
done:
    PyBuffer_Release(&vt); PyBuffer_Release(&vs); PyBuffer_Release(&vk);
    return out;
}

/* sums_at(ts, st, sums, i) -> (up, down, maintenance, runs): the prefix sums at point i
 * (timeline._sums_at's twin); ``sums`` must hold i's block unless it is the first. */
static PyObject *sums_at(PyObject *self, PyObject *args) {
    PyObject *ts, *st, *sums;
    Py_ssize_t i;
    if (!PyArg_ParseTuple(args, "OOOn", &ts, &st, &sums, &i)) return NULL;
    Py_buffer vt, vs, vk;
    if (sums_views(ts, st, sums, &vt, &vs, &vk) < 0) return NULL;
    const double *t = vt.buf;
    const signed char *sv = vs.buf;
    Py_ssize_t k = i >> SUMS_SHIFT, j = k << SUMS_SHIFT;
    PyObject *res = NULL;
    Sums a;
    if (i < 0 || i >= vs.len) {
        PyErr_SetString(PyExc_IndexError, "sums_at: point index out of range");
        goto done;
    }
    if (k) {
        if (vk.len / 8 < SUMS_N * (k + 1)) {
            PyErr_SetString(PyExc_ValueError, "sums_at: the block's sums are not built");
            goto done;
        }
        const double *b = (const double *)vk.buf + SUMS_N * k;
        a.u = b[0]; a.d = b[1]; a.m = b[2]; a.r = b[3];
    } else {
        a.u = a.d = a.m = 0.0;
        a.r = sv[0] == ST_DOWN ? 1.0 : 0.0;
    }
    double prev = t[j];
    int p = sv[j];
    for (Py_ssize_t q = j + 1; q <= i; q++) sums_step(&a, t[q], sv[q], &prev, &p);
    res = Py_BuildValue("(dddd)", a.u, a.d, a.m, a.r);
done:
    PyBuffer_Release(&vt); PyBuffer_Release(&vs); PyBuffer_Release(&vk);
    return res;
}


/* ---- window ratios of many timelines at once (streams.report.window_availability_flat) --
 * The twin of report.window_availability_many's loop, step for step, so every ratio is
 * the same double: the windows' starts ``xs`` (now - size, by size ascending) and ``cut``
 * (now - the longest) are computed by the caller, the sums at a point come from
 * sums_point (sums_at's loop), a ratio is ``total <= 0 ? 1.0 : up / total``. */

/* A column's items and count: in place (array_fast) or through a view (*held set to 1;
 * release it). 0, or -1 with an exception set. */
static int col_read(PyObject *col, char fmt, const void **items, Py_ssize_t *n, Py_buffer *v,
                    int *held) {
    *held = 0;
    if (arr_is(col, fmt)) {
        *items = ((ArrayObj *)col)->ob_item;
        *n = Py_SIZE(col);
        return 0;
    }
    if (col_view(col, v, fmt) < 0) return -1;
    *held = 1;
    *items = v->buf;
    *n = v->len / v->itemsize;
    return 0;
}

/* compact_keep(ts, st, start, cut) -> None or (times, states): the points of [start, cut)
 * that ComponentTracker.compact keeps (the last at its ts that changes the state from
 * the previous kept one; UP before the first point), None when it keeps them all. In
 * a storm every point is a change, so a compaction keeps all: its scan in Python was
 * ~20 us per call every 64 events of a component (~9% of both stages at 2,000
 * components); here it is one pass over the arrays. component._compact_keep's twin. */
static PyObject *compact_keep(PyObject *self, PyObject *args) {
    PyObject *tcol, *scol;
    Py_ssize_t start, cut;
    if (!PyArg_ParseTuple(args, "OOnn", &tcol, &scol, &start, &cut)) return NULL;
    const void *tv, *sv;
    Py_ssize_t n, ns;
    Py_buffer vt, vs;
    int ht, hs;
    if (col_read(tcol, 'd', &tv, &n, &vt, &ht) < 0) return NULL;
    if (col_read(scol, 'b', &sv, &ns, &vs, &hs) < 0) {
        if (ht) PyBuffer_Release(&vt);
        return NULL;
    }
    PyObject *out = NULL, *kt = NULL, *ks = NULL;
    const double *t = tv;
    const signed char *sc = sv;
    if (ns != n || start < 0 || cut < start || cut > n) {
        PyErr_SetString(PyExc_ValueError, "compact_keep: columns of different lengths or a range outside them");
        goto done;
    }
    int prev = start > 0 ? sc[start - 1] : 0;
    Py_ssize_t i = start;
    for (; i < cut; i++) {  /* the points kept before the first one dropped */
        if ((i + 1 < n && t[i + 1] == t[i]) || sc[i] == prev) break;
        prev = sc[i];
    }
    if (i == cut) {
        out = Py_NewRef(Py_None);
        goto done;
    }
    kt = PyList_New(0);
    ks = PyList_New(0);
    if (kt == NULL || ks == NULL) goto done;
    for (Py_ssize_t j = start; j < cut; j++) {
        if (j >= i) {
            if (j + 1 < n && t[j + 1] == t[j]) continue;
            if (sc[j] == prev) continue;
            prev = sc[j];
        }
        PyObject *f = PyFloat_FromDouble(t[j]);
        if (f == NULL || PyList_Append(kt, f) < 0) { Py_XDECREF(f); goto done; }
        Py_DECREF(f);
        if (sc[j] < 0 || sc[j] > 2) {
            PyErr_Format(PyExc_ValueError, "state %d is not 0, 1 or 2", sc[j]);
            goto done;
        }
        if (PyList_Append(ks, STATE_INT[sc[j]]) < 0) goto done;
    }
    out = PyTuple_Pack(2, kt, ks);
done:
    Py_XDECREF(kt);
    Py_XDECREF(ks);
    if (ht) PyBuffer_Release(&vt);
    if (hs) PyBuffer_Release(&vs);
    return out;
}

/* The sums at point i (sums_at's loop); kept: the kept sums (nk of them), which must
 * hold i's block unless it is the first. 0, or -1 with an exception set. */
static int sums_point(const double *t, const signed char *sv, const double *kept, Py_ssize_t nk,
                      Py_ssize_t i, Sums *a) {
    Py_ssize_t k = i >> SUMS_SHIFT, j = k << SUMS_SHIFT;
    if (k) {
        if (nk < SUMS_N * (k + 1)) {
            PyErr_SetString(PyExc_ValueError, "windows_many: the block's sums are not built");
            return -1;
        }
        const double *b = kept + SUMS_N * k;
        a->u = b[0]; a->d = b[1]; a->m = b[2]; a->r = b[3];
    } else {
        a->u = a->d = a->m = 0.0;
        a->r = sv[0] == ST_DOWN ? 1.0 : 0.0;
    }
    double prev = t[j];
    int p = sv[j];
    for (Py_ssize_t q = j + 1; q <= i; q++) sums_step(a, t[q], sv[q], &prev, &p);
    return 0;
}

#define MAX_WINDOWS 32
static PyObject *s_build;

/* One timeline's state at now (into *state) and its ratios (nx of them, into out). */
static int windows_one(PyObject *tl, double now, const double *xs, Py_ssize_t nx, double cut,
                       int *state, double *out) {
    int rc = -1;
    PyObject *ts = col_slot(tl, &TL_TS), *st = NULL, *sums = NULL;
    Py_buffer vt, vs, vk;
    int ht = 0, hs = 0, hk = 0;
    const double *t = NULL, *kept = NULL;
    const signed char *sv = NULL;
    Py_ssize_t n = 0, ns = 0, nk = 0;
    if (ts == NULL) return -1;
    if (col_read(ts, 'd', (const void **)&t, &n, &vt, &ht) < 0) goto done;
    *state = ST_UP;
    if (n == 0 || now < t[0]) {  /* never anything but up, or up before the first point */
        for (Py_ssize_t w = 0; w < nx; w++) out[w] = 1.0;
        rc = 0;
        goto done;
    }
    if ((st = col_slot(tl, &TL_ST)) == NULL) goto done;
    if (col_read(st, 'b', (const void **)&sv, &ns, &vs, &hs) < 0) goto done;
    if (ns != n) {
        PyErr_SetString(PyExc_ValueError, "a timeline's times and states differ in length");
        goto done;
    }
    Py_ssize_t j = bisect_r(t, n, now, 0) - 1;
    int s = sv[j];
    *state = s;
    if (t[j] <= cut || (j == 0 && s == ST_UP)) {  /* one state through every window */
        for (Py_ssize_t w = 0; w < nx; w++) out[w] = s == ST_DOWN ? 0.0 : 1.0;
        rc = 0;
        goto done;
    }
    if (j >= SUMS_BLOCK) {
        PyObject *valid = slot_get(tl, &TL_VALID);
        if (valid == NULL) goto done;
        Py_ssize_t v = PyLong_AsSsize_t(valid);
        Py_DECREF(valid);
        if (v == -1 && PyErr_Occurred()) goto done;
        if (j >= v) {  /* Timeline._build: the kept sums brought up to date */
            if (ht) { PyBuffer_Release(&vt); ht = 0; }
            if (hs) { PyBuffer_Release(&vs); hs = 0; }
            PyObject *r = PyObject_CallMethodNoArgs(tl, s_build);
            if (r == NULL) goto done;
            Py_DECREF(r);
            if (col_read(ts, 'd', (const void **)&t, &n, &vt, &ht) < 0) goto done;
            if (col_read(st, 'b', (const void **)&sv, &ns, &vs, &hs) < 0) goto done;
            if (ns != n || j >= n) {
                PyErr_SetString(PyExc_ValueError, "a timeline changed while its sums were built");
                goto done;
            }
        }
        if ((sums = col_slot(tl, &TL_SUMS)) == NULL) goto done;
        if (col_read(sums, 'd', (const void **)&kept, &nk, &vk, &hk) < 0) goto done;
    }
    double first = t[0];
    Sums a;
    if (sums_point(t, sv, kept, nk, j, &a) < 0) goto done;
    double dt = now - t[j];
    double u = a.u, d = a.d;
    Py_ssize_t last = j, hi = j + 1, k = 0;
    double bu = u + (s == ST_UP ? dt : 0.0);
    double bd = d + (s == ST_DOWN ? dt : 0.0);
    for (; k < nx; k++) {
        double x = xs[k];
        if (x < first) break;  /* and so are the starts of the longer windows */
        Py_ssize_t i = hi - 1;
        if (t[i] > x) {
            i = bisect_r(t, i, x, 0) - 1;
            hi = i + 1;
        }
        dt = x - t[i];
        int p = sv[i];
        if (i != last) {
            if (sums_point(t, sv, kept, nk, i, &a) < 0) goto done;
            u = a.u; d = a.d;
            last = i;
        }
        double au = u + (p == ST_UP ? dt : 0.0);
        double ad = d + (p == ST_DOWN ? dt : 0.0);
        double up = bu - au;
        double total = up + (bd - ad);
        out[k] = total <= 0 ? 1.0 : up / total;
    }
    double bd0 = bd - 0.0;  /* before the first point (up): au = x - first, ad = 0.0 */
    for (; k < nx; k++) {
        double up = bu - (xs[k] - first);
        double total = up + bd0;
        out[k] = total <= 0 ? 1.0 : up / total;
    }
    rc = 0;
done:
    if (ht) PyBuffer_Release(&vt);
    if (hs) PyBuffer_Release(&vs);
    if (hk) PyBuffer_Release(&vk);
    Py_XDECREF(ts); Py_XDECREF(st); Py_XDECREF(sums);
    return rc;
}

/* windows_many(timelines, now, xs, cut) -> (states, ratios): per timeline its state at
 * ``now`` (a byte each) and its ratio over each window (a float each, len(xs) per
 * timeline, in the order of ``xs``, one flat list). */
static PyObject *windows_many(PyObject *self, PyObject *args) {
    PyObject *tls, *xs_obj;
    double now, cut;
    if (!PyArg_ParseTuple(args, "OdOd", &tls, &now, &xs_obj, &cut)) return NULL;
    PyObject *seq = PySequence_Fast(tls, "windows_many: timelines must be a sequence");
    if (seq == NULL) return NULL;
    PyObject *xseq = PySequence_Fast(xs_obj, "windows_many: xs must be a sequence");
    if (xseq == NULL) { Py_DECREF(seq); return NULL; }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), nx = PySequence_Fast_GET_SIZE(xseq);
    PyObject *states = NULL, *values = NULL, *res = NULL;
    double xs[MAX_WINDOWS], out[MAX_WINDOWS];
    if (nx > MAX_WINDOWS) {
        PyErr_SetString(PyExc_ValueError, "windows_many: too many windows");
        goto done;
    }
    for (Py_ssize_t w = 0; w < nx; w++) {
        xs[w] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(xseq, w));
        if (xs[w] == -1.0 && PyErr_Occurred()) goto done;
    }
    if ((states = PyBytes_FromStringAndSize(NULL, n)) == NULL) goto done;
    if ((values = PyList_New(n * nx)) == NULL) goto done;
    char *sp = PyBytes_AS_STRING(states);
    for (Py_ssize_t q = 0; q < n; q++) {
        int state;
        if (windows_one(PySequence_Fast_GET_ITEM(seq, q), now, xs, nx, cut, &state, out) < 0)
            goto done;
        sp[q] = (char)state;
        for (Py_ssize_t w = 0; w < nx; w++) {
            PyObject *f = PyFloat_FromDouble(out[w]);
            if (f == NULL) goto done;
            PyList_SET_ITEM(values, q * nx + w, f);
        }
    }
    res = PyTuple_Pack(2, states, values);
done:
    Py_DECREF(seq); Py_DECREF(xseq);
    Py_XDECREF(states); Py_XDECREF(values);
    return res;
}


/* at[k], the index of the first of piece k's nw texts in a list of ``size`` pieces (every
 * second one is a text); -1 with an exception set when it is not an int or not in range. */
static Py_ssize_t piece_base(PyObject *at, Py_ssize_t k, Py_ssize_t nw, Py_ssize_t size) {
    Py_ssize_t base = PyLong_AsSsize_t(PyList_GET_ITEM(at, k));
    if (base == -1 && PyErr_Occurred()) return -1;
    if (base < 0 || base + 2 * (nw - 1) >= size) {
        PyErr_SetString(PyExc_IndexError, "put_texts: a piece index out of range");
        return -1;
    }
    return base;
}

/* put_texts(out, at, texts, pre, post): ``out[at[k] + 2 * w] = pre[w] + texts[nw * k + w]
 * + post[w]`` for each k and each w < nw = len(pre) (the collector's pieces of the
 * moving components' lines, agents/exposition/collector.py ``_put_texts``'s twin):
 * the strings joined in one allocation each, without a Python frame per item.
 * ``texts`` may also be a JSON array of numbers as bytes (orjson's text of the values:
 * ``b"[t0,t1,...]"``), whose items are the texts: no string made for each. */
static PyObject *put_json_texts(PyObject *out, PyObject *at, PyObject *json, PyObject *pre,
                                PyObject *post);

static PyObject *put_texts(PyObject *self, PyObject *args) {
    PyObject *out, *at, *texts, *pre, *post;
    if (!PyArg_ParseTuple(args, "O!O!OO!O!", &PyList_Type, &out, &PyList_Type, &at,
                          &texts, &PyTuple_Type, &pre, &PyTuple_Type, &post))
        return NULL;
    if (PyBytes_Check(texts)) return put_json_texts(out, at, texts, pre, post);
    if (!PyList_Check(texts)) {
        PyErr_SetString(PyExc_TypeError, "put_texts: texts must be a list or bytes");
        return NULL;
    }
    Py_ssize_t nw = PyTuple_GET_SIZE(pre), n = PyList_GET_SIZE(at);
    if (PyTuple_GET_SIZE(post) != nw || PyList_GET_SIZE(texts) != n * nw) {
        PyErr_SetString(PyExc_ValueError, "put_texts: len(texts) must be len(at) * len(pre)");
        return NULL;
    }
    int ascii = 1;
    for (Py_ssize_t w = 0; w < nw; w++) {
        PyObject *a = PyTuple_GET_ITEM(pre, w), *b = PyTuple_GET_ITEM(post, w);
        if (!PyUnicode_Check(a) || !PyUnicode_Check(b)) {
            PyErr_SetString(PyExc_TypeError, "put_texts: pre and post must hold strings");
            return NULL;
        }
        ascii = ascii && PyUnicode_IS_ASCII(a) && PyUnicode_IS_ASCII(b);
    }
    Py_ssize_t size = PyList_GET_SIZE(out);
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_ssize_t base = piece_base(at, k, nw, size);
        if (base < 0) return NULL;
        for (Py_ssize_t w = 0; w < nw; w++) {
            PyObject *a = PyTuple_GET_ITEM(pre, w), *b = PyTuple_GET_ITEM(post, w);
            PyObject *t = PyList_GET_ITEM(texts, nw * k + w), *joined;
            if (!PyUnicode_Check(t)) {
                PyErr_SetString(PyExc_TypeError, "put_texts: texts must be strings");
                return NULL;
            }
            if (ascii && PyUnicode_IS_ASCII(t)) {
                Py_ssize_t la = PyUnicode_GET_LENGTH(a), lt = PyUnicode_GET_LENGTH(t),
                           lb = PyUnicode_GET_LENGTH(b);
                joined = PyUnicode_New(la + lt + lb, 127);
                if (joined == NULL) return NULL;
                Py_UCS1 *d = PyUnicode_1BYTE_DATA(joined);
                memcpy(d, PyUnicode_1BYTE_DATA(a), la);
                memcpy(d + la, PyUnicode_1BYTE_DATA(t), lt);
                memcpy(d + la + lt, PyUnicode_1BYTE_DATA(b), lb);
            } else {
                PyObject *x = PyUnicode_Concat(a, t);
                if (x == NULL) return NULL;
                joined = PyUnicode_Concat(x, b);
                Py_DECREF(x);
                if (joined == NULL) return NULL;
            }
            if (PyList_SetItem(out, base + 2 * w, joined) < 0) return NULL;  /* steals */
        }
    }
    Py_RETURN_NONE;
}


static PyObject *put_json_texts(PyObject *out, PyObject *at, PyObject *json, PyObject *pre,
                                PyObject *post) {
    Py_ssize_t nw = PyTuple_GET_SIZE(pre), n = PyList_GET_SIZE(at);
    if (PyTuple_GET_SIZE(post) != nw) {
        PyErr_SetString(PyExc_ValueError, "put_texts: len(post) must be len(pre)");
        return NULL;
    }
    for (Py_ssize_t w = 0; w < nw; w++) {
        PyObject *a = PyTuple_GET_ITEM(pre, w), *b = PyTuple_GET_ITEM(post, w);
        if (!PyUnicode_Check(a) || !PyUnicode_Check(b) || !PyUnicode_IS_ASCII(a)
                || !PyUnicode_IS_ASCII(b)) {
            PyErr_SetString(PyExc_TypeError, "put_texts: pre and post must hold ASCII strings");
            return NULL;
        }
    }
    const char *p = PyBytes_AS_STRING(json), *end = p + PyBytes_GET_SIZE(json);
    if (end - p < 2 || p[0] != '[' || end[-1] != ']') goto bad;
    p++;
    end--;  /* the closing bracket */
    /* Checked whole before anything is written: n * nw items, none empty, numbers. */
    Py_ssize_t items = 0;
    for (const char *q = p, *from = p; q <= end; q++) {
        if (q == end || *q == ',') {
            if (q == from) {
                if (q == end && items == 0) break;  /* [] */
                goto bad;
            }
            items++;
            from = q + 1;
        } else if ((unsigned char)*q >= 128 || *q == '"') {
            goto bad;
        }
    }
    if (items != n * nw) goto bad;
    Py_ssize_t size = PyList_GET_SIZE(out);
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_ssize_t base = piece_base(at, k, nw, size);
        if (base < 0) return NULL;
        for (Py_ssize_t w = 0; w < nw; w++) {
            const char *q = p;
            while (q < end && *q != ',') q++;
            PyObject *a = PyTuple_GET_ITEM(pre, w), *b = PyTuple_GET_ITEM(post, w);
            Py_ssize_t la = PyUnicode_GET_LENGTH(a), lt = q - p, lb = PyUnicode_GET_LENGTH(b);
            PyObject *joined = PyUnicode_New(la + lt + lb, 127);
            if (joined == NULL) return NULL;
            Py_UCS1 *d = PyUnicode_1BYTE_DATA(joined);
            memcpy(d, PyUnicode_1BYTE_DATA(a), la);
            memcpy(d + la, p, lt);
            memcpy(d + la + lt, PyUnicode_1BYTE_DATA(b), lb);
            if (PyList_SetItem(out, base + 2 * w, joined) < 0) return NULL;  /* steals */
            p = q < end ? q + 1 : q;
        }
    }
    Py_RETURN_NONE;
bad:
    PyErr_SetString(PyExc_ValueError,
                    "put_texts: texts must be a JSON array of len(at) * len(pre) numbers");
    return NULL;
}


/* att_whole(att, lo, hi, ts, tag, tags, out): Timeline._att_whole's twin, the whole
 * pieces lo .. hi - 1 of the attribution index: for each blamed component (in the
 * dict's order) ``out[comp] = out.get(comp, 0.0) + (cum(b) - cum(a))`` where a, b are
 * its first entries at or after pieces lo and hi, and cum(e) is its running sum kept at
 * every ATT_BLOCK-th entry plus the shares after it, added in the same order
 * (Timeline._att_cum). A share is (ts[i + 1] - ts[i]) / len(tags[tag[i]]). */
#define ATT_SHIFT 3

static Py_ssize_t bisect_li(const int *a, Py_ssize_t hi, Py_ssize_t x, Py_ssize_t lo) {
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (a[mid] < x) lo = mid + 1; else hi = mid;
    }
    return lo;
}

static int att_cum(const int *idx, Py_ssize_t nidx, const double *cum, Py_ssize_t ncum,
                   const double *t, Py_ssize_t n, const unsigned int *tg, PyObject *tags,
                   Py_ssize_t e, double *res) {
    if (e == nidx) {
        if (ncum < 1) goto bad;
        *res = cum[ncum - 1];
        return 0;
    }
    Py_ssize_t k = e >> ATT_SHIFT;
    if (k >= ncum) goto bad;
    double total = cum[k];
    for (Py_ssize_t q = k << ATT_SHIFT; q < e; q++) {
        Py_ssize_t i = idx[q];
        if (i < 0 || i + 1 >= n) goto bad;
        Py_ssize_t g = tg[i];
        if (g >= PyList_GET_SIZE(tags)) goto bad;
        Py_ssize_t len = PyObject_Length(PyList_GET_ITEM(tags, g));
        if (len < 0) return -1;
        if (len == 0) {
            PyErr_SetString(PyExc_ZeroDivisionError, "float division by zero");
            return -1;
        }
        total = total + (t[i + 1] - t[i]) / (double)len;
    }
    *res = total;
    return 0;
bad:
    PyErr_SetString(PyExc_IndexError, "att_whole: the attribution index does not fit the timeline");
    return -1;
}

static PyObject *att_whole(PyObject *self, PyObject *args) {
    PyObject *att, *ts, *tag, *tags, *out;
    Py_ssize_t lo, hi;
    if (!PyArg_ParseTuple(args, "O!nnOOO!O!", &PyDict_Type, &att, &lo, &hi, &ts, &tag,
                          &PyList_Type, &tags, &PyDict_Type, &out))
        return NULL;
    Py_buffer vt, vg;
    if (col_view(ts, &vt, 'd') < 0) return NULL;
    if (col_view(tag, &vg, 'I') < 0) { PyBuffer_Release(&vt); return NULL; }
    PyObject *res = NULL;
    const double *t = vt.buf;
    const unsigned int *tg = vg.buf;
    Py_ssize_t n = vt.len / 8;
    if (vg.len / 4 != n) {
        PyErr_SetString(PyExc_ValueError, "a timeline's times and tags differ in length");
        goto done;
    }
    Py_ssize_t pos = 0;
    PyObject *comp, *entry;
    while (PyDict_Next(att, &pos, &comp, &entry)) {
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2) {
            PyErr_SetString(PyExc_TypeError, "att_whole: an entry must be (idx, cum)");
            goto done;
        }
        Py_buffer vi, vc;
        if (col_view(PyTuple_GET_ITEM(entry, 0), &vi, 'i') < 0) goto done;
        if (col_view(PyTuple_GET_ITEM(entry, 1), &vc, 'd') < 0) { PyBuffer_Release(&vi); goto done; }
        const int *idx = vi.buf;
        const double *cum = vc.buf;
        Py_ssize_t nidx = vi.len / 4, ncum = vc.len / 8;
        Py_ssize_t a = bisect_li(idx, nidx, lo, 0);
        Py_ssize_t b = bisect_li(idx, nidx, hi, a);
        int rc = 0;
        if (b > a) {
            double cb, ca;
            rc = att_cum(idx, nidx, cum, ncum, t, n, tg, tags, b, &cb);
            if (rc == 0) rc = att_cum(idx, nidx, cum, ncum, t, n, tg, tags, a, &ca);
            if (rc == 0) {
                PyObject *old = PyDict_GetItemWithError(out, comp);  /* borrowed */
                double base = 0.0;
                if (old == NULL && PyErr_Occurred()) rc = -1;
                else if (old != NULL) {
                    base = PyFloat_AsDouble(old);
                    if (base == -1.0 && PyErr_Occurred()) rc = -1;
                }
                if (rc == 0) {
                    PyObject *v = PyFloat_FromDouble(base + (cb - ca));
                    rc = v == NULL ? -1 : PyDict_SetItem(out, comp, v);
                    Py_XDECREF(v);
                }
            }
        }
        PyBuffer_Release(&vi); PyBuffer_Release(&vc);
        if (rc < 0) goto done;
    }
    Py_INCREF(Py_None);
    res = Py_None;
done:
    PyBuffer_Release(&vt); PyBuffer_Release(&vg);
    return res;
}


/* One more item at the end of an array of typecode 'd' or 'i' (the attribution index):
 * written in place when it may be, else through array.append. */
static int arr_push(PyObject *col, char code, double x, int i) {
    int done = code == 'd' ? arr_put(col, 'd', &x, (Py_ssize_t)sizeof x)
                           : arr_put(col, code, &i, (Py_ssize_t)sizeof i);
    if (done) return done < 0 ? -1 : 0;
    return arr_append_obj(col, code == 'd' ? PyFloat_FromDouble(x) : PyLong_FromLong(i));
}

/* att_extend(att, v, closed, ts, st, tag, tags): the pieces v .. closed - 1 added to the
 * attribution index ``att`` (timeline.py ``Timeline._att_extend``'s twin, the same
 * floats): each blamed component's share of each closed down piece, its piece index
 * appended to ``idx`` and its running sum kept in ``cum`` at every ATT_BLOCK-th entry
 * and as the last item otherwise. An entry is made as ``(array('i'), array('d', [0.0]))``.
 * The same dict order as the twin (entries are made in the same order). */
static PyObject *att_extend(PyObject *self, PyObject *args) {
    PyObject *att, *ts, *stc, *tag, *tags;
    Py_ssize_t v, closed;
    if (!PyArg_ParseTuple(args, "O!nnOOOO!", &PyDict_Type, &att, &v, &closed, &ts, &stc, &tag,
                          &PyList_Type, &tags))
        return NULL;
    if (Array_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "att_extend: setup() was not called");
        return NULL;
    }
    Py_buffer vt, vs, vg;
    if (col_view(ts, &vt, 'd') < 0) return NULL;
    if (col_view(stc, &vs, 'b') < 0) { PyBuffer_Release(&vt); return NULL; }
    if (col_view(tag, &vg, 'I') < 0) { PyBuffer_Release(&vt); PyBuffer_Release(&vs); return NULL; }
    PyObject *res = NULL;
    const double *t = vt.buf;
    const signed char *sv = vs.buf;
    const unsigned int *tg = vg.buf;
    Py_ssize_t n = vt.len / 8;
    if (vs.len != n || vg.len / 4 != n) {
        PyErr_SetString(PyExc_ValueError, "a timeline's columns differ in length");
        goto done;
    }
    if (closed > v && (v < 0 || closed > n - 1 || closed > INT_MAX)) {
        PyErr_SetString(PyExc_IndexError, "att_extend: pieces out of the timeline");
        goto done;
    }
    for (Py_ssize_t i = v; i < closed; i++) {
        if (sv[i] != ST_DOWN || !(t[i + 1] > t[i])) continue;
        Py_ssize_t g = tg[i];
        if (!g) continue;
        if (g >= PyList_GET_SIZE(tags)) {
            PyErr_SetString(PyExc_IndexError, "att_extend: a tag index out of the tag table");
            goto done;
        }
        PyObject *seq = PySequence_Fast(PyList_GET_ITEM(tags, g), "a tag must be a sequence");
        if (seq == NULL) goto done;
        Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
        if (len == 0) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ZeroDivisionError, "float division by zero");
            goto done;
        }
        double share = (t[i + 1] - t[i]) / (double)len;
        for (Py_ssize_t c = 0; c < len; c++) {
            PyObject *comp = PySequence_Fast_GET_ITEM(seq, c);
            PyObject *entry = PyDict_GetItemWithError(att, comp);  /* borrowed */
            if (entry == NULL) {
                if (PyErr_Occurred()) { Py_DECREF(seq); goto done; }
                PyObject *idx = PyObject_CallFunction((PyObject *)Array_type, "s", "i");
                PyObject *cum = idx == NULL ? NULL
                    : PyObject_CallFunction((PyObject *)Array_type, "s(d)", "d", 0.0);
                PyObject *e = cum == NULL ? NULL : PyTuple_Pack(2, idx, cum);
                Py_XDECREF(idx); Py_XDECREF(cum);
                if (e == NULL || PyDict_SetItem(att, comp, e) < 0) {
                    Py_XDECREF(e); Py_DECREF(seq); goto done;
                }
                Py_DECREF(e);
                entry = e;  /* held by att */
            } else if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2) {
                Py_DECREF(seq);
                PyErr_SetString(PyExc_TypeError, "att_extend: an entry must be (idx, cum)");
                goto done;
            }
            PyObject *idx = PyTuple_GET_ITEM(entry, 0), *cum = PyTuple_GET_ITEM(entry, 1);
            if (Py_TYPE(idx) != Array_type || Py_TYPE(cum) != Array_type) {
                Py_DECREF(seq);
                PyErr_SetString(PyExc_TypeError, "att_extend: an entry must hold two arrays");
                goto done;
            }
            double last;
            int has = dcol_last(cum, &last);
            if (has <= 0) {
                Py_DECREF(seq);
                if (has == 0) PyErr_SetString(PyExc_IndexError, "att_extend: an empty running sum");
                goto done;
            }
            double total = last + share;
            if (Py_SIZE(idx) & ((1 << ATT_SHIFT) - 1)) {
                if (arr_is(cum, 'd') && ((ArrayObj *)cum)->ob_exports == 0) {
                    ((double *)((ArrayObj *)cum)->ob_item)[Py_SIZE(cum) - 1] = total;
                } else {
                    PyObject *f = PyFloat_FromDouble(total);
                    int rc = f == NULL ? -1 : PySequence_SetItem(cum, Py_SIZE(cum) - 1, f);
                    Py_XDECREF(f);
                    if (rc < 0) { Py_DECREF(seq); goto done; }
                }
            } else if (arr_push(cum, 'd', total, 0) < 0) {
                Py_DECREF(seq); goto done;
            }
            if (arr_push(idx, 'i', 0.0, (int)i) < 0) { Py_DECREF(seq); goto done; }
        }
        Py_DECREF(seq);
    }
    Py_INCREF(Py_None);
    res = Py_None;
done:
    PyBuffer_Release(&vt); PyBuffer_Release(&vs); PyBuffer_Release(&vg);
    return res;
}


/* put_choices(out, at, picks, choices): ``out[at[k]] = choices[picks[k]]`` for each k
 * (picks: bytes; collector.py ``_put_choices``'s twin): the up line of each moving
 * component by its state. */
static PyObject *put_choices(PyObject *self, PyObject *args) {
    PyObject *out, *at, *choices;
    Py_buffer picks;
    if (!PyArg_ParseTuple(args, "O!O!y*O!", &PyList_Type, &out, &PyList_Type, &at, &picks,
                          &PyTuple_Type, &choices))
        return NULL;
    PyObject *res = NULL;
    const unsigned char *p = picks.buf;
    Py_ssize_t n = PyList_GET_SIZE(at), size = PyList_GET_SIZE(out), nc = PyTuple_GET_SIZE(choices);
    if (picks.len != n) {
        PyErr_SetString(PyExc_ValueError, "put_choices: len(picks) must be len(at)");
        goto done;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_ssize_t i = PyLong_AsSsize_t(PyList_GET_ITEM(at, k));
        if (i == -1 && PyErr_Occurred()) goto done;
        if (i < 0 || i >= size || p[k] >= nc) {
            PyErr_SetString(PyExc_IndexError, "put_choices: an index out of range");
            goto done;
        }
        PyObject *c = PyTuple_GET_ITEM(choices, p[k]);
        Py_INCREF(c);
        if (PyList_SetItem(out, i, c) < 0) goto done;  /* steals */
    }
    Py_INCREF(Py_None);
    res = Py_None;
done:
    PyBuffer_Release(&picks);
    return res;
}

/* plain_floats(values, lo, hi) -> int: 2 if every item is a float that is 0.0 or whose
 * magnitude is in [lo, hi) (NaN is not), else 1 if every item is a float, else 0
 * (collector.py ``_plain_floats``'s twin). */
static PyObject *plain_floats(PyObject *self, PyObject *args) {
    PyObject *values;
    double lo, hi;
    if (!PyArg_ParseTuple(args, "O!dd", &PyList_Type, &values, &lo, &hi)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(values);
    long kind = 2;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *v = PyList_GET_ITEM(values, k);
        if (!PyFloat_CheckExact(v)) return PyLong_FromLong(0);
        double x = fabs(PyFloat_AS_DOUBLE(v));
        if (!(x == 0.0 || (lo <= x && x < hi))) kind = 1;
    }
    return PyLong_FromLong(kind);
}

/* odd_floats(values, lo, hi) -> list: the indexes of the items that are not 0.0 and
 * whose magnitude is not in [lo, hi) (NaN included); every item must be a float
 * (collector.py ``_odd_floats``'s twin). */
static PyObject *odd_floats(PyObject *self, PyObject *args) {
    PyObject *values;
    double lo, hi;
    if (!PyArg_ParseTuple(args, "O!dd", &PyList_Type, &values, &lo, &hi)) return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(values);
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *v = PyList_GET_ITEM(values, k);
        if (!PyFloat_Check(v)) {
            Py_DECREF(out);
            PyErr_SetString(PyExc_TypeError, "odd_floats: every value must be a float");
            return NULL;
        }
        double x = fabs(PyFloat_AS_DOUBLE(v));
        if (!(x == 0.0 || (lo <= x && x < hi))) {
            PyObject *i = PyLong_FromSsize_t(k);
            if (i == NULL || PyList_Append(out, i) < 0) { Py_XDECREF(i); Py_DECREF(out); return NULL; }
            Py_DECREF(i);
        }
    }
    return out;
}

/* lines_until(ts, st, now, sizes) -> float: report.component_lines_until's loop (its
 * twin, ``_lines_until``) over a history's columns: until when every ratio over the
 * windows of ``sizes`` and the state stay what they are at ``now``; ``now`` when some
 * window holds both up and down seconds. */
/* Until when a history's window ratios stay (``lines_until``'s loop): into *out. */
static int until_code_of(PyObject *ts, PyObject *st, double now, PyObject *sizes, double *out,
                         unsigned char *zeros, signed char *state);

static int until_of(PyObject *ts, PyObject *st, double now, PyObject *sizes, double *out) {
    unsigned char zeros;
    signed char state;
    return until_code_of(ts, st, now, sizes, out, &zeros, &state);
}

/* ``until_of``, and what the ratios then are: bit w of *zeros set when window w holds
 * only down seconds (ratio 0.0), clear when it holds none (1.0); *state the state at
 * ``now`` (up before the first point). Both meaningful only when *out > now. */
static int until_code_of(PyObject *ts, PyObject *st, double now, PyObject *sizes, double *out,
                         unsigned char *zeros, signed char *state) {
    Py_buffer vt, vs;
    int ht, hs;
    const double *t;
    const signed char *sv;
    Py_ssize_t n, ns;
    if (col_read(ts, 'd', (const void **)&t, &n, &vt, &ht) < 0) return -1;
    if (col_read(st, 'b', (const void **)&sv, &ns, &vs, &hs) < 0) {
        if (ht) PyBuffer_Release(&vt);
        return -1;
    }
    int rc = -1;
    double until;
    *zeros = 0;
    *state = ST_UP;
    if (ns != n) {
        PyErr_SetString(PyExc_ValueError, "a timeline's times and states differ in length");
        goto done;
    }
    if (n == 0) { until = INFINITY; goto out; }
    Py_ssize_t j = bisect_r(t, n, now, 0) - 1;
    until = j + 1 < n ? t[j + 1] : INFINITY;
    if (j < 0) goto out;  /* up before the first point: every ratio 1.0 */
    *state = sv[j];
    double down_end = -INFINITY, other_end = -INFINITY;
    if (sv[j] == ST_DOWN) down_end = INFINITY; else other_end = INFINITY;
    for (Py_ssize_t k = j - 1; k >= 0 && (down_end == -INFINITY || other_end == -INFINITY); k--) {
        double end = t[k + 1];
        if (end > t[k]) {  /* zero-length pieces last no time */
            if (sv[k] == ST_DOWN) {
                if (down_end == -INFINITY) down_end = end;
            } else if (other_end == -INFINITY) {
                other_end = end;
            }
        }
    }
    if (other_end == -INFINITY) other_end = t[0];  /* before the first point: up */
    for (Py_ssize_t w = 0; w < PyTuple_GET_SIZE(sizes); w++) {
        double size = PyFloat_AsDouble(PyTuple_GET_ITEM(sizes, w));
        if (size == -1.0 && PyErr_Occurred()) goto done;
        double x = now - size;
        if (down_end <= x) continue;  /* no down second in the window */
        if (other_end <= x) {  /* only down seconds: ratio 0.0 */
            if (w < 8) *zeros |= (unsigned char)(1u << w);
            continue;
        }
        until = now;
        break;
    }
out:
    *out = until;
    rc = 0;
done:
    if (ht) PyBuffer_Release(&vt);
    if (hs) PyBuffer_Release(&vs);
    return rc;
}

static PyObject *lines_until(PyObject *self, PyObject *args) {
    PyObject *ts, *st, *sizes;
    double now, until;
    if (!PyArg_ParseTuple(args, "OOdO!", &ts, &st, &now, &PyTuple_Type, &sizes)) return NULL;
    if (until_of(ts, st, now, sizes, &until) < 0) return NULL;
    return PyFloat_FromDouble(until);
}

/* lines_codes_many(trackers, now, sizes) -> (array('d') bytes, bytes): ``lines_until`` of
 * each component tracker's history, +inf for None (a scrape after a backlog asks it of
 * every component), and for each tracker two bytes: the windows whose ratio is 0.0 (bit w; the others are
 * 1.0) and the state at ``now``, meaningful where its until is after ``now`` (report.py
 * ``component_lines_codes_many``'s twin): the values of a component proved constant
 * without computing them. At most 8 windows. */
static PyObject *lines_codes_many(PyObject *self, PyObject *args) {
    PyObject *trackers, *sizes;
    double now;
    if (!PyArg_ParseTuple(args, "O!dO!", &PyList_Type, &trackers, &now, &PyTuple_Type, &sizes))
        return NULL;
    if (PyTuple_GET_SIZE(sizes) > 8) {
        PyErr_SetString(PyExc_ValueError, "lines_codes_many: at most 8 windows");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(trackers);
    PyObject *res = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(double));
    PyObject *codes = PyBytes_FromStringAndSize(NULL, 2 * n);
    if (res == NULL || codes == NULL) { Py_XDECREF(res); Py_XDECREF(codes); return NULL; }
    double *out = (double *)PyBytes_AS_STRING(res);
    unsigned char *c = (unsigned char *)PyBytes_AS_STRING(codes);
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *tr = PyList_GET_ITEM(trackers, k);
        c[2 * k] = 0;
        c[2 * k + 1] = ST_UP;
        if (tr == Py_None) { out[k] = INFINITY; continue; }
        PyObject *h = slot_get(tr, &CT_HISTORY);
        if (h == NULL) goto fail;
        PyObject *ts = slot_get(h, &TL_TS);
        PyObject *st = ts == NULL ? NULL : slot_get(h, &TL_ST);
        signed char state = ST_UP;
        int rc = st == NULL ? -1
            : until_code_of(ts, st, now, sizes, &out[k], &c[2 * k], &state);
        Py_XDECREF(ts); Py_XDECREF(st); Py_DECREF(h);
        if (rc < 0) goto fail;
        c[2 * k + 1] = (unsigned char)state;
    }
    return Py_BuildValue("(NN)", res, codes);
fail:
    Py_DECREF(res);
    Py_DECREF(codes);
    return NULL;
}

/* stored_hits(keys, dirty, store, cache) -> list: for each key, (object, bytes) when it
 * is not in ``dirty`` and ``cache[key]`` is (bytes, object) with the bytes those
 * ``store[key]`` holds (the same object or equal), else None: the decoded-cache hits of
 * ``TrackerTable.get_stored_many`` (agents/worker/state.py, whose loop is the twin),
 * which a scrape after a backlog asks of every component. */
static PyObject *stored_hits(PyObject *self, PyObject *args) {
    PyObject *keys, *dirty, *store, *cache;
    if (!PyArg_ParseTuple(args, "O!OO!O!", &PyList_Type, &keys, &dirty, &PyDict_Type, &store,
                          &PyDict_Type, &cache))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(keys);
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *key = PyList_GET_ITEM(keys, k);
        PyObject *got = Py_None;
        int in_dirty = PySequence_Contains(dirty, key);
        if (in_dirty < 0) goto fail;
        if (!in_dirty) {
            PyObject *raw = PyDict_GetItemWithError(store, key);  /* borrowed */
            if (raw == NULL && PyErr_Occurred()) goto fail;
            PyObject *hit = raw == NULL ? NULL : PyDict_GetItemWithError(cache, key);
            if (hit == NULL && PyErr_Occurred()) goto fail;
            if (hit != NULL && PyTuple_CheckExact(hit) && PyTuple_GET_SIZE(hit) == 2) {
                PyObject *held = PyTuple_GET_ITEM(hit, 0);
                int same = held == raw ? 1 : PyObject_RichCompareBool(held, raw, Py_EQ);
                if (same < 0) goto fail;
                if (same) {
                    got = PyTuple_Pack(2, PyTuple_GET_ITEM(hit, 1), held);
                    if (got == NULL) goto fail;
                    PyList_SET_ITEM(out, k, got);
                    continue;
                }
            }
        }
        Py_INCREF(Py_None);
        PyList_SET_ITEM(out, k, Py_None);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* cached_many(keys, dirty, store, cache[, touch]) -> (found, rest): ``TrackerTable.get_many``'s
 * decoded-cache hits (agents/worker/state.py, whose Python loop is the twin). ``found``
 * maps each key of the iterable ``keys`` that is in ``dirty`` to ``cache[key][1]``, and
 * each other key whose ``cache[key]`` is (bytes, object) with the bytes ``store[key]``
 * holds (the same object or equal) to that object. A key neither stored nor cached is
 * left out (the table has none); every other key is in ``rest``, for ``get``. Stage 1
 * asks it of every component of a slice: at 20,000 components nearly one a record.
 * With ``touch`` (not None), ``dirty[key] = touch`` for each key put in ``found``
 * (stage 1 marks every tracker it looks up as changed: here, where the key's entry in
 * ``dirty`` was just probed, instead of in a pass of its own). */
static PyObject *cached_many(PyObject *self, PyObject *args) {
    PyObject *keys, *dirty, *store, *cache, *touch = Py_None;
    if (!PyArg_ParseTuple(args, "OO!O!O!|O", &keys, &PyDict_Type, &dirty, &PyDict_Type, &store,
                          &PyDict_Type, &cache, &touch))
        return NULL;
    PyObject *found = PyDict_New();
    PyObject *rest = PyList_New(0);
    PyObject *it = PyObject_GetIter(keys);
    if (found == NULL || rest == NULL || it == NULL) goto fail;
    PyObject *key;
    while ((key = PyIter_Next(it)) != NULL) {
        int into_rest = 1;
        PyObject *hit = PyDict_GetItemWithError(cache, key);  /* borrowed */
        if (hit == NULL && PyErr_Occurred()) { Py_DECREF(key); goto fail; }
        int ok_hit = hit != NULL && PyTuple_CheckExact(hit) && PyTuple_GET_SIZE(hit) == 2;
        int in_dirty = PyDict_Contains(dirty, key);
        if (in_dirty < 0) { Py_DECREF(key); goto fail; }
        if (in_dirty) {
            into_rest = !ok_hit;
        } else {
            PyObject *raw = PyDict_GetItemWithError(store, key);  /* borrowed */
            if (raw == NULL && PyErr_Occurred()) { Py_DECREF(key); goto fail; }
            if (raw == NULL) {
                into_rest = hit != NULL;  /* get() drops the stale entry */
                if (!into_rest) { Py_DECREF(key); continue; }
            } else if (ok_hit) {
                PyObject *held = PyTuple_GET_ITEM(hit, 0);
                int same = held == raw ? 1 : PyObject_RichCompareBool(held, raw, Py_EQ);
                if (same < 0) { Py_DECREF(key); goto fail; }
                into_rest = !same;
            }
        }
        int rc = into_rest ? PyList_Append(rest, key)
                           : PyDict_SetItem(found, key, PyTuple_GET_ITEM(hit, 1));
        if (rc == 0 && !into_rest && touch != Py_None) rc = PyDict_SetItem(dirty, key, touch);
        Py_DECREF(key);
        if (rc < 0) goto fail;
    }
    if (PyErr_Occurred()) goto fail;
    Py_DECREF(it);
    return Py_BuildValue("(NN)", found, rest);
fail:
    Py_XDECREF(found);
    Py_XDECREF(rest);
    Py_XDECREF(it);
    return NULL;
}

/* not_memo(keys, memo, value) -> list: the keys of the iterable ``keys`` for which
 * ``memo`` (a dict) does not hold an int equal to ``value`` (missing ones included).
 * Stage 1's test of which components of a slice belong to another table partition
 * (agents/worker/pipeline.py) over the partitioner's memo, one C loop instead of a
 * Python call per component. */
static PyObject *not_memo(PyObject *self, PyObject *args) {
    PyObject *keys, *memo;
    long value;
    if (!PyArg_ParseTuple(args, "OO!l", &keys, &PyDict_Type, &memo, &value)) return NULL;
    PyObject *out = PyList_New(0);
    PyObject *it = PyObject_GetIter(keys);
    if (out == NULL || it == NULL) goto fail;
    PyObject *key;
    while ((key = PyIter_Next(it)) != NULL) {
        PyObject *got = PyDict_GetItemWithError(memo, key);  /* borrowed */
        int other = 1;
        if (got == NULL) {
            if (PyErr_Occurred()) { Py_DECREF(key); goto fail; }
        } else if (PyLong_CheckExact(got)) {
            int overflow = 0;
            long v = PyLong_AsLongAndOverflow(got, &overflow);
            if (v == -1 && PyErr_Occurred()) { Py_DECREF(key); goto fail; }
            other = overflow || v != value;
        }
        int rc = other ? PyList_Append(out, key) : 0;
        Py_DECREF(key);
        if (rc < 0) goto fail;
    }
    if (PyErr_Occurred()) goto fail;
    Py_DECREF(it);
    return out;
fail:
    Py_XDECREF(out);
    Py_XDECREF(it);
    return NULL;
}

/* service_families(names, wins, labs, custs, rows) -> list of 20 str: the lines of
 * each service family (spec.SERVICE_METRICS order, without their heads) for the
 * services whose label texts are ``labs`` and whose customers' texts are ``custs``,
 * from their rows (collector.py ``_service_families_text``'s twin, which writes them
 * in ``_service_lines_texts``' formats). A row is ``(flags, json, comps, restore,
 * odd)``: 6 bytes (up, maintenance, in service time, scheduled maintenance, trending,
 * KPI gap), orjson's text of the values in ``_service_values``' order (25, the restore
 * target if ``restore``, one per blamed component), the blamed components' names, and
 * None or a dict of the texts of values written otherwise (index -> str). Every
 * string must be ASCII (else ValueError: the caller writes them in Python). */
#define SF_FAMILIES 20
#define SF_FIXED 25

typedef struct { const char *p; Py_ssize_t n; } Span;

static int sf_ascii(PyObject *s) {
    return PyUnicode_Check(s) && PyUnicode_IS_ASCII(s);
}

static PyObject *service_families(PyObject *self, PyObject *args) {
    PyObject *names, *wins, *labs, *custs, *rows;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!", &PyTuple_Type, &names, &PyTuple_Type, &wins,
                          &PyList_Type, &labs, &PyList_Type, &custs, &PyList_Type, &rows))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows);
    if (PyTuple_GET_SIZE(names) != SF_FAMILIES || PyTuple_GET_SIZE(wins) != 8
            || PyList_GET_SIZE(labs) != n || PyList_GET_SIZE(custs) != n) {
        PyErr_SetString(PyExc_ValueError, "service_families: 20 names, 8 windows, a label "
                        "and customers per row");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < SF_FAMILIES; i++)
        if (!sf_ascii(PyTuple_GET_ITEM(names, i))) goto not_ascii;
    for (Py_ssize_t i = 0; i < 8; i++)
        if (!sf_ascii(PyTuple_GET_ITEM(wins, i))) goto not_ascii;
    /* Every row checked and its value texts found before anything is written. */
    Py_ssize_t *first = PyMem_Malloc(sizeof(Py_ssize_t) * (n + 1));
    if (first == NULL) return PyErr_NoMemory();
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (!PyTuple_CheckExact(row) || PyTuple_GET_SIZE(row) != 5
                || !PyBytes_Check(PyTuple_GET_ITEM(row, 0)) || PyBytes_GET_SIZE(PyTuple_GET_ITEM(row, 0)) != 6
                || !PyBytes_Check(PyTuple_GET_ITEM(row, 1)) || !PyTuple_Check(PyTuple_GET_ITEM(row, 2))) {
            PyMem_Free(first);
            PyErr_SetString(PyExc_TypeError, "service_families: a row is (6 bytes, bytes, tuple, "
                            "bool, dict or None)");
            return NULL;
        }
        if (!sf_ascii(PyList_GET_ITEM(labs, i)) || !sf_ascii(PyList_GET_ITEM(custs, i))) {
            PyMem_Free(first);
            goto not_ascii;
        }
        PyObject *comps = PyTuple_GET_ITEM(row, 2);
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(comps); j++)
            if (!sf_ascii(PyTuple_GET_ITEM(comps, j))) {
                PyMem_Free(first);
                goto not_ascii;
            }
        int restore = PyObject_IsTrue(PyTuple_GET_ITEM(row, 3));
        if (restore < 0) {
            PyMem_Free(first);
            return NULL;
        }
        first[i] = total;
        total += SF_FIXED + restore + PyTuple_GET_SIZE(comps);
    }
    first[n] = total;
    Span *sp = PyMem_Malloc(sizeof(Span) * (total ? total : 1));
    if (sp == NULL) {
        PyMem_Free(first);
        return PyErr_NoMemory();
    }
    PyObject *out = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PyList_GET_ITEM(rows, i), *json = PyTuple_GET_ITEM(row, 1);
        PyObject *odd = PyTuple_GET_ITEM(row, 4);
        const char *p = PyBytes_AS_STRING(json), *end = p + PyBytes_GET_SIZE(json);
        Py_ssize_t want = first[i + 1] - first[i], items = 0;
        if (end - p < 2 || p[0] != '[' || end[-1] != ']') goto bad;
        p++;
        end--;
        const char *from = p;
        for (const char *q = p; q <= end; q++) {
            if (q == end || *q == ',') {
                if (q == from) {
                    if (q == end && items == 0) break;
                    goto bad;
                }
                if (items >= want) goto bad;
                sp[first[i] + items].p = from;
                sp[first[i] + items].n = q - from;
                items++;
                from = q + 1;
            } else if ((unsigned char)*q >= 128 || *q == '"') {
                goto bad;
            }
        }
        if (items != want) goto bad;
        if (odd != Py_None) {
            if (!PyDict_Check(odd)) goto bad;
            PyObject *k, *v;
            Py_ssize_t pos = 0;
            while (PyDict_Next(odd, &pos, &k, &v)) {
                Py_ssize_t at = PyLong_AsSsize_t(k);
                if (at == -1 && PyErr_Occurred()) goto fail;
                if (at < 0 || at >= want || !PyUnicode_Check(v)) goto bad;
                if (!PyUnicode_IS_ASCII(v)) {
                    PyMem_Free(sp);
                    PyMem_Free(first);
                    goto not_ascii;
                }
                sp[first[i] + at].p = (const char *)PyUnicode_1BYTE_DATA(v);
                sp[first[i] + at].n = PyUnicode_GET_LENGTH(v);
            }
        }
    }
    out = PyList_New(SF_FAMILIES);
    if (out == NULL) goto fail;
    /* The family of each line kind: a flag (by its byte), a value (by its index), the
     * window values from an index, the info line or the blamed components' lines. */
    enum { K_INFO, K_FLAG, K_VALUE, K_WINDOWS, K_RESTORE, K_BLAME };
    static const int kind[SF_FAMILIES] = {
        K_INFO, K_FLAG, K_FLAG, K_FLAG, K_FLAG, K_WINDOWS, K_VALUE, K_VALUE, K_WINDOWS,
        K_VALUE, K_VALUE, K_FLAG, K_VALUE, K_VALUE, K_RESTORE, K_VALUE, K_VALUE, K_VALUE,
        K_FLAG, K_BLAME};
    /* The flag's byte or the value's index of each family (-1: neither). */
    static const int arg[SF_FAMILIES] = {
        -1, 0, 1, 2, 3, 0, 16, 21, 8, 17, 18, 4, 22, 19, 25, 23, 20, 24, 5, -1};
    Py_ssize_t wl[8];
    for (int w = 0; w < 8; w++) wl[w] = PyUnicode_GET_LENGTH(PyTuple_GET_ITEM(wins, w));
    for (int f = 0; f < SF_FAMILIES; f++) {
        PyObject *name = PyTuple_GET_ITEM(names, f);
        const char *nm = (const char *)PyUnicode_1BYTE_DATA(name);
        Py_ssize_t nl = PyUnicode_GET_LENGTH(name);
        /* Two passes: the length, then the text. */
        Py_ssize_t len = 0;
        Py_UCS1 *d = NULL;
        PyObject *text = NULL;
        for (int pass = 0; pass < 2; pass++) {
            if (pass == 1) {
                text = PyUnicode_New(len, 127);
                if (text == NULL) goto fail;
                d = PyUnicode_1BYTE_DATA(text);
            }
#define PUT(src, cnt) do { Py_ssize_t c_ = (cnt); if (pass) memcpy(d, (src), c_), d += c_; else len += c_; } while (0)
#define PUTS(s) PUT(PyUnicode_1BYTE_DATA(s), PyUnicode_GET_LENGTH(s))
            for (Py_ssize_t i = 0; i < n; i++) {
                PyObject *row = PyList_GET_ITEM(rows, i), *lab = PyList_GET_ITEM(labs, i);
                const char *flags = PyBytes_AS_STRING(PyTuple_GET_ITEM(row, 0));
                Span *v = sp + first[i];
                switch (kind[f]) {
                case K_INFO:
                    PUT(nm, nl); PUT("{customers=\"", 12); PUTS(PyList_GET_ITEM(custs, i));
                    PUT("\",", 2); PUTS(lab); PUT("} 1.0\n", 6);
                    break;
                case K_FLAG:
                    PUT(nm, nl); PUT("{", 1); PUTS(lab);
                    PUT(flags[arg[f]] ? "} 1.0\n" : "} 0.0\n", 6);
                    break;
                case K_RESTORE:
                    if (first[i + 1] - first[i] == SF_FIXED + PyTuple_GET_SIZE(PyTuple_GET_ITEM(row, 2)))
                        break;  /* none */
                    /* fall through */
                case K_VALUE:
                    PUT(nm, nl); PUT("{", 1); PUTS(lab); PUT("} ", 2);
                    PUT(v[arg[f]].p, v[arg[f]].n); PUT("\n", 1);
                    break;
                case K_WINDOWS:
                    for (int w = 0; w < 8; w++) {
                        PUT(nm, nl); PUT("{", 1); PUTS(lab);
                        PUT(PyUnicode_1BYTE_DATA(PyTuple_GET_ITEM(wins, w)), wl[w]);
                        PUT(v[arg[f] + w].p, v[arg[f] + w].n); PUT("\n", 1);
                    }
                    break;
                case K_BLAME: {
                    PyObject *comps = PyTuple_GET_ITEM(row, 2);
                    Py_ssize_t nc = PyTuple_GET_SIZE(comps), nb = first[i + 1] - first[i] - nc;
                    for (Py_ssize_t j = 0; j < nc; j++) {
                        PUT(nm, nl); PUT("{component=\"", 12); PUTS(PyTuple_GET_ITEM(comps, j));
                        PUT("\",", 2); PUTS(lab); PUT("} ", 2);
                        PUT(v[nb + j].p, v[nb + j].n); PUT("\n", 1);
                    }
                    break;
                }
                }
            }
#undef PUT
#undef PUTS
        }
        PyList_SET_ITEM(out, f, text);
    }
    PyMem_Free(sp);
    PyMem_Free(first);
    return out;
bad:
    PyErr_SetString(PyExc_ValueError, "service_families: a row's values must be a JSON array "
                    "of 25 numbers, its restore target's and one per blamed component, and "
                    "its odd texts strings at their indexes");
fail:
    Py_XDECREF(out);
    PyMem_Free(sp);
    PyMem_Free(first);
    return NULL;
not_ascii:
    PyErr_SetString(PyExc_ValueError, "service_families: every string must be ASCII");
    return NULL;
}

/* tags_used(tag) -> int: how many distinct tag indexes ``tag`` (array('I')) holds, 0
 * (NO_TAG) counted whether it occurs or not: Timeline.compact_tags compares it with its
 * table's length, at every prune. */
static PyObject *tags_used(PyObject *self, PyObject *args) {
    PyObject *tag;
    Py_ssize_t ntags;
    if (!PyArg_ParseTuple(args, "On", &tag, &ntags)) return NULL;
    Py_buffer v;
    if (col_view(tag, &v, 'I') < 0) return NULL;
    if (ntags < 1) ntags = 1;
    unsigned char *seen = PyMem_Calloc((size_t)ntags, 1);
    if (seen == NULL) { PyBuffer_Release(&v); return PyErr_NoMemory(); }
    const unsigned int *g = v.buf;
    Py_ssize_t n = v.len / 4, count = 1;
    seen[0] = 1;
    for (Py_ssize_t q = 0; q < n; q++) {
        unsigned int x = g[q];
        if (x >= (unsigned int)ntags) {
            PyMem_Free(seen); PyBuffer_Release(&v);
            PyErr_SetString(PyExc_ValueError, "tags_used: a tag index is out of its table");
            return NULL;
        }
        if (!seen[x]) { seen[x] = 1; count++; }
    }
    PyMem_Free(seen);
    PyBuffer_Release(&v);
    return PyLong_FromSsize_t(count);
}

/* ---- a day rollup's account over a view (streams.periods.Account.add_segments) ---------
 * The twin of add_segments' loop, step for step, so the sums, the blame and the runs are
 * the same doubles in the same order: the services checkpoint recomputes the running
 * day of every service a batch touched from its last mark, a point at a time. The
 * pieces of the view's columns over [a, b): up, planned and down seconds added in time
 * order; a down piece's seconds shared out over its blamed components in the tag's
 * order; a down piece that starts where the last run ends extends it (its blamed set
 * merged by ``merge(run_tag, tag)`` if it is not a subset), any other opens a run
 * (``first(g)``: the runs' index of the view's tag g, asked once a g). The accounting's
 * codes: 0 up, 1 planned, 2 down, 3 outside (ends a run). */

/* Set the last item of ``col`` ('d' or 'I'): in place, or through the sequence protocol. */
static int set_last_d(PyObject *col, double x) {
    if (arr_is(col, 'd') && Py_SIZE(col) > 0 && ((ArrayObj *)col)->ob_exports == 0) {
        ((double *)((ArrayObj *)col)->ob_item)[Py_SIZE(col) - 1] = x;
        return 0;
    }
    PyObject *v = PyFloat_FromDouble(x);
    if (v == NULL) return -1;
    Py_ssize_t n = PyObject_Length(col);
    int r = n < 1 ? -1 : PySequence_SetItem(col, n - 1, v);
    Py_DECREF(v);
    return r;
}

static int set_last_obj(PyObject *col, PyObject *v) {
    Py_ssize_t n = PyObject_Length(col);
    if (n < 1) return -1;
    return PySequence_SetItem(col, n - 1, v);
}

/* Blame accumulated in doubles: the slot of each blamed component, in the order first
 * blamed in this call (a component new to ``blame`` is put there with 0.0 at that moment,
 * so the keys keep the Python loop's order), its value added to piece by piece in the
 * same order as the loop adds to the dict's float, and written back at the end. */
typedef struct {
    PyObject *index;  /* component -> slot (int) */
    PyObject **keys;  /* owned */
    double *vals;
    Py_ssize_t n, cap;
    Py_ssize_t **of_tag;  /* per view tag index: its components' slots, or NULL */
    Py_ssize_t ntable;
} BlameSlots;

static void blame_slots_free(BlameSlots *b) {
    for (Py_ssize_t q = 0; q < b->n; q++) Py_DECREF(b->keys[q]);
    if (b->of_tag != NULL)
        for (Py_ssize_t q = 0; q < b->ntable; q++) PyMem_Free(b->of_tag[q]);
    PyMem_Free(b->of_tag);
    PyMem_Free(b->keys);
    PyMem_Free(b->vals);
    Py_XDECREF(b->index);
}

/* The slots of view tag ``g`` (a tuple of ``ntag`` components), made on first use. */
static Py_ssize_t *blame_slots_of(BlameSlots *b, unsigned int g, PyObject *tag, Py_ssize_t ntag) {
    Py_ssize_t *got = b->of_tag[g];
    if (got != NULL) return got;
    got = PyMem_Malloc((size_t)ntag * sizeof(Py_ssize_t));
    if (got == NULL) { PyErr_NoMemory(); return NULL; }
    for (Py_ssize_t q = 0; q < ntag; q++) {
        PyObject *comp = PyTuple_GET_ITEM(tag, q);
        PyObject *at = PyDict_GetItemWithError(b->index, comp);
        if (at != NULL) { got[q] = PyLong_AsSsize_t(at); continue; }
        if (PyErr_Occurred()) { PyMem_Free(got); return NULL; }
        got[q] = -1;  /* made when first blamed (blame_slot_make), in the loop's order */
    }
    b->of_tag[g] = got;
    return got;
}

/* The slot of ``comp``, made when the loop first blames it: its value read from
 * ``blame``, or put there as 0.0 (so the dict's keys keep the loop's order). */
static int blame_slot_make(BlameSlots *b, PyObject *blame, PyObject *comp, Py_ssize_t *slot) {
    PyObject *at = PyDict_GetItemWithError(b->index, comp);
    if (at != NULL) { *slot = PyLong_AsSsize_t(at); return 0; }
    if (PyErr_Occurred()) return -1;
    double was = 0.0;
    PyObject *old = PyDict_GetItemWithError(blame, comp);
    if (old != NULL) {
        was = PyFloat_AsDouble(old);
        if (was == -1.0 && PyErr_Occurred()) return -1;
    } else {
        if (PyErr_Occurred()) return -1;
        PyObject *zero = PyFloat_FromDouble(0.0);
        if (zero == NULL) return -1;
        int r = PyDict_SetItem(blame, comp, zero);
        Py_DECREF(zero);
        if (r < 0) return -1;
    }
    if (b->n == b->cap) {
        Py_ssize_t cap = b->cap ? 2 * b->cap : 16;
        PyObject **keys = PyMem_Realloc(b->keys, (size_t)cap * sizeof(PyObject *));
        if (keys == NULL) { PyErr_NoMemory(); return -1; }
        b->keys = keys;
        double *vals = PyMem_Realloc(b->vals, (size_t)cap * sizeof(double));
        if (vals == NULL) { PyErr_NoMemory(); return -1; }
        b->vals = vals;
        b->cap = cap;
    }
    PyObject *ix = PyLong_FromSsize_t(b->n);
    if (ix == NULL) return -1;
    int r = PyDict_SetItem(b->index, comp, ix);
    Py_DECREF(ix);
    if (r < 0) return -1;
    Py_INCREF(comp);
    b->keys[b->n] = comp;
    b->vals[b->n] = was;
    *slot = b->n++;
    return 0;
}

static int blame_slots_write(BlameSlots *b, PyObject *blame) {
    for (Py_ssize_t q = 0; q < b->n; q++) {
        PyObject *v = PyFloat_FromDouble(b->vals[q]);
        if (v == NULL) return -1;
        int r = PyDict_SetItem(blame, b->keys[q], v);
        Py_DECREF(v);
        if (r < 0) return -1;
    }
    return 0;
}

/* The components of ``tup`` (a tuple) as bits of ``*out`` (each component numbered on
 * first sight in ``bit_of``, at most 64 in a call): 1, 0 when they do not fit (or
 * ``tup`` is not a tuple), -1 on error. */
static int run_bits(PyObject *bit_of, PyObject *tup, uint64_t *out) {
    if (!PyTuple_Check(tup)) return 0;
    uint64_t bits = 0;
    for (Py_ssize_t q = 0; q < PyTuple_GET_SIZE(tup); q++) {
        PyObject *comp = PyTuple_GET_ITEM(tup, q);
        PyObject *at = PyDict_GetItemWithError(bit_of, comp);
        long i;
        if (at != NULL) {
            i = PyLong_AsLong(at);
            if (i == -1 && PyErr_Occurred()) return -1;
        } else {
            if (PyErr_Occurred()) return -1;
            i = (long)PyDict_GET_SIZE(bit_of);
            if (i >= 64) return 0;
            PyObject *ix = PyLong_FromLong(i);
            if (ix == NULL) return -1;
            int r = PyDict_SetItem(bit_of, comp, ix);
            Py_DECREF(ix);
            if (r < 0) return -1;
        }
        bits |= (uint64_t)1 << i;
    }
    *out = bits;
    return 1;
}

static PyObject *day_segments(PyObject *self, PyObject *args) {
    PyObject *tsc, *stc, *tgc, *table, *ab, *ix, *rtags, *blame, *first, *merge;
    double a, b, up, down, planned;
    if (!PyArg_ParseTuple(args, "OOOO!dddddOOO!O!OO", &tsc, &stc, &tgc, &PyList_Type, &table,
                          &a, &b, &up, &down, &planned, &ab, &ix, &PyList_Type, &rtags,
                          &PyDict_Type, &blame, &first, &merge))
        return NULL;
    if (!(b > a)) return Py_BuildValue("(ddd)", up, down, planned);
    const void *tv, *sv, *gv;
    Py_ssize_t n, ns, ng;
    Py_buffer vt, vs, vg;
    int ht = 0, hs = 0, hg = 0;
    Py_ssize_t ntable = PyList_GET_SIZE(table);
    Py_ssize_t *interned = NULL;
    PyObject *result = NULL;
    BlameSlots bs = {NULL, NULL, NULL, 0, 0, NULL, ntable};
    /* per view tag: the last run tag it was found a subset of (-1: none yet) */
    long long *sub_r = NULL;
    /* Whether a view tag's set is in the last run's: as bitmasks over the components
     * seen in this call (``run_bits``), while at most 64 (else item by item against
     * the run's tuple). In a storm a long down run, most often carried in from the
     * last checkpoint, meets a new down set at almost every piece. The last run's mask
     * is for the run ``mask_n`` of tag ``mask_r``; a view tag's is cached by index
     * (``g_ok``: 0 not yet, 1 in ``g_bits``, 2 does not fit). */
    PyObject *bit_of = NULL;
    uint64_t *g_bits = NULL;
    unsigned char *g_ok = NULL;
    int mask_ok = 0;
    Py_ssize_t mask_n = -1;
    unsigned long mask_r = 0;
    uint64_t run_mask = 0;
    if (col_read(tsc, 'd', &tv, &n, &vt, &ht) < 0) return NULL;
    if (col_read(stc, 'b', &sv, &ns, &vs, &hs) < 0) goto done;
    if (col_read(tgc, 'I', &gv, &ng, &vg, &hg) < 0) goto done;
    if (ns != n || ng != n) {
        PyErr_SetString(PyExc_ValueError, "day_segments: the view's columns differ in length");
        goto done;
    }
    interned = PyMem_Malloc((size_t)(ntable ? ntable : 1) * sizeof(Py_ssize_t));
    sub_r = PyMem_Malloc((size_t)(ntable ? ntable : 1) * sizeof(long long));
    bs.of_tag = PyMem_Calloc((size_t)(ntable ? ntable : 1), sizeof(Py_ssize_t *));
    bs.index = PyDict_New();
    g_bits = PyMem_Malloc((size_t)(ntable ? ntable : 1) * sizeof(uint64_t));
    g_ok = PyMem_Calloc((size_t)(ntable ? ntable : 1), 1);
    if (interned == NULL || sub_r == NULL || bs.of_tag == NULL || g_bits == NULL || g_ok == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if ((bit_of = PyDict_New()) == NULL) goto done;
    if (bs.index == NULL) goto done;
    for (Py_ssize_t q = 0; q < ntable; q++) interned[q] = sub_r[q] = -1;
    const double *t = tv;
    const signed char *st = sv;
    const unsigned int *tg = gv;
    /* i = bisect_right(ts, a) - 1 */
    Py_ssize_t lo_i = 0, hi_i = n;
    while (lo_i < hi_i) {
        Py_ssize_t mid = (lo_i + hi_i) / 2;
        if (a < t[mid]) hi_i = mid; else lo_i = mid + 1;
    }
    Py_ssize_t i = lo_i - 1;
    if (i < 0) {
        double f = n ? t[0] : INFINITY;
        if (f > a) up += (b < f ? b : f) - a;  /* before the first point: up */
        i = 0;
    }
    while (i < n) {
        double lo = t[i];
        if (lo >= b) break;
        if (lo < a) lo = a;
        double hi = i + 1 < n ? t[i + 1] : b;
        if (hi > b) hi = b;
        int s = st[i];
        unsigned int g = tg[i];
        i++;
        double dt = hi - lo;
        if (dt <= 0) continue;
        if (s == 0) { up += dt; continue; }
        if (s == 1) { planned += dt; continue; }
        if (s != 2) continue;  /* outside: neither up nor down, and it ends a run */
        down += dt;
        if ((Py_ssize_t)g >= ntable) {
            PyErr_SetString(PyExc_ValueError, "day_segments: a tag index is out of its table");
            goto done;
        }
        PyObject *tag = PyList_GET_ITEM(table, (Py_ssize_t)g);
        if (!PyTuple_Check(tag)) {
            PyErr_SetString(PyExc_TypeError, "day_segments: a tag must be a tuple");
            goto done;
        }
        Py_ssize_t ntag = PyTuple_GET_SIZE(tag);
        if (ntag) {
            double share = dt / (double)ntag;
            Py_ssize_t *slots = blame_slots_of(&bs, g, tag, ntag);
            if (slots == NULL) goto done;
            for (Py_ssize_t q = 0; q < ntag; q++) {
                if (slots[q] < 0
                        && blame_slot_make(&bs, blame, PyTuple_GET_ITEM(tag, q), &slots[q]) < 0)
                    goto done;
                bs.vals[slots[q]] += share;
            }
        }
        Py_ssize_t nruns = PyObject_Length(ix);
        if (nruns < 0) goto done;
        double last_b = 0.0;
        if (nruns) {
            if (dcol_last(ab, &last_b) < 0) goto done;
        }
        if (nruns && last_b == lo) {
            unsigned int r;
            if (icol_last(ix, &r) < 0) goto done;
            if ((Py_ssize_t)r >= PyList_GET_SIZE(rtags)) {
                PyErr_SetString(PyExc_ValueError, "day_segments: a run's tag is out of its table");
                goto done;
            }
            PyObject *rt = PyList_GET_ITEM(rtags, (Py_ssize_t)r);
            Py_INCREF(rt);
            if (set_last_d(ab, hi + 0.0) < 0) { Py_DECREF(rt); goto done; }
            if (!(mask_n == nruns && mask_r == r)) {  /* a run not seen yet: its mask */
                int ok = run_bits(bit_of, rt, &run_mask);
                if (ok < 0) { Py_DECREF(rt); goto done; }
                mask_ok = ok;
                mask_n = nruns;
                mask_r = r;
            }
            if (g_ok[g] == 0) {
                int ok = run_bits(bit_of, tag, &g_bits[g]);
                if (ok < 0) { Py_DECREF(rt); goto done; }
                g_ok[g] = ok ? 1 : 2;
            }
            int known = mask_ok && g_ok[g] == 1;
            int subset = known ? (g_bits[g] & ~run_mask) == 0 : sub_r[g] == (long long)r;
            for (Py_ssize_t q = 0; !known && !subset && q < ntag; q++) {
                int c = PySequence_Contains(rt, PyTuple_GET_ITEM(tag, q));
                if (c < 0) { Py_DECREF(rt); goto done; }
                if (!c) break;
                if (q == ntag - 1) subset = 1;
            }
            if (ntag == 0) subset = 1;
            if (subset) {
                sub_r[g] = (long long)r;
            } else {
                PyObject *k = PyObject_CallFunctionObjArgs(merge, rt, tag, NULL);
                if (k == NULL || set_last_obj(ix, k) < 0) { Py_XDECREF(k); Py_DECREF(rt); goto done; }
                /* the merged run: the union of the two */
                mask_r = PyLong_AsUnsignedLong(k);
                Py_DECREF(k);
                if (mask_r == (unsigned long)-1 && PyErr_Occurred()) { Py_DECREF(rt); goto done; }
                if (known) run_mask |= g_bits[g];
                else mask_n = -1;  /* found afresh at the next piece */
            }
            Py_DECREF(rt);
        } else {
            Py_ssize_t r = interned[g];
            if (r < 0) {
                PyObject *k = PyObject_CallFunction(first, "I", g);
                if (k == NULL) goto done;
                r = PyLong_AsSsize_t(k);
                Py_DECREF(k);
                if (r < 0) {
                    if (!PyErr_Occurred())
                        PyErr_SetString(PyExc_ValueError, "day_segments: first() gave a negative index");
                    goto done;
                }
                interned[g] = r;
            }
            PyObject *x = PyFloat_FromDouble(lo + 0.0);
            if (x == NULL) goto done;
            int bad = col_append(ab, x);
            Py_DECREF(x);
            if (bad) goto done;
            x = PyFloat_FromDouble(hi + 0.0);
            if (x == NULL) goto done;
            bad = col_append(ab, x);
            Py_DECREF(x);
            if (bad) goto done;
            x = PyLong_FromSsize_t(r);
            if (x == NULL) goto done;
            bad = col_append(ix, x);
            Py_DECREF(x);
            if (bad) goto done;
            mask_n = -1;  /* a new run: its mask is found at its next piece */
        }
    }
    if (blame_slots_write(&bs, blame) < 0) goto done;
    result = Py_BuildValue("(ddd)", up, down, planned);
done:
    blame_slots_free(&bs);
    Py_XDECREF(bit_of);
    PyMem_Free(g_bits);
    PyMem_Free(g_ok);
    PyMem_Free(sub_r);
    PyMem_Free(interned);
    if (hg) PyBuffer_Release(&vg);
    if (hs) PyBuffer_Release(&vs);
    if (ht) PyBuffer_Release(&vt);
    return result;
}

/* Whether ArrayObj is CPython's array layout here, on live arrays of each typecode the
 * columns use: sets array_fast. */
static int check_array_layout(void) {
    const char *codes[3] = {"d", "b", "I"};
    int ok = 1;
    for (int i = 0; ok && i < 3; i++) {
        PyObject *a = PyObject_CallFunction((PyObject *)Array_type, "s(iii)", codes[i], 1, 2, 3);
        if (a == NULL) return -1;
        ArrayObj *o = (ArrayObj *)a;
        Py_buffer v;
        if (PyObject_GetBuffer(a, &v, PyBUF_FORMAT) < 0) { Py_DECREF(a); return -1; }
        ok = v.buf == (void *)o->ob_item && Py_SIZE(a) == 3 && o->allocated >= 3
             && o->ob_exports == 1 && o->ob_descr != NULL && *o->ob_descr == codes[i][0]
             && v.format != NULL && v.format[0] == codes[i][0] && v.len == 3 * v.itemsize;
        PyBuffer_Release(&v);
        ok = ok && o->ob_exports == 0;
        if (ok && codes[i][0] == 'd') ok = ((double *)o->ob_item)[2] == 3.0;
        if (ok && codes[i][0] == 'b') ok = ((signed char *)o->ob_item)[2] == 3;
        if (ok && codes[i][0] == 'I') ok = v.itemsize == 4 && ((unsigned int *)o->ob_item)[2] == 3;
        Py_DECREF(a);
    }
    array_fast = array_fast_checked = ok;
    return 0;
}



/* array_fast([on]) -> bool: whether the columns are read and appended to in place; with
 * ``on`` False the generic calls are used (for the tests), True restores the check's. */
static PyObject *get_array_fast(PyObject *self, PyObject *args) {
    int on = -1;
    if (!PyArg_ParseTuple(args, "|p", &on)) return NULL;
    if (on == 0) array_fast = 0;
    else if (on == 1) array_fast = array_fast_checked;
    return PyBool_FromLong(array_fast);
}

/* untrack(*objs): each object that the cyclic garbage collector tracks is taken off its
 * lists (PyObject_GC_UnTrack; others are left as they are). For objects that cannot be
 * part of a reference cycle, so reference counting alone frees them: a timeline and its
 * columns (arrays are GC objects since Python 3.10 only because their type is a heap
 * type). See Timeline.__init__ for why. */
static PyObject *untrack(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    for (Py_ssize_t i = 0; i < nargs; i++)
        if (PyObject_GC_IsTracked(args[i])) PyObject_GC_UnTrack(args[i]);
    Py_RETURN_NONE;
}

/* setup(Timeline, NO_TAG): the objects the loops put in the lists. */
static PyObject *setup(PyObject *self, PyObject *args) {
    PyObject *tl, *nt;
    if (!PyArg_ParseTuple(args, "O!O", &PyType_Type, &tl, &nt)) return NULL;
    if (slot_init(&TL_TS, tl) || slot_init(&TL_ST, tl) || slot_init(&TL_TAG, tl) || slot_init(&TL_GX, tl)
        || slot_init(&TL_TAGS, tl) || slot_init(&TL_SUMS, tl) || slot_init(&TL_VALID, tl))
        return NULL;
    if (NO_TAG_INDEX == NULL) {
        PyObject *mod = PyImport_ImportModule("streams.timeline");
        if (mod == NULL) return NULL;
        NO_TAG_INDEX = PyObject_GetAttrString(mod, "_NO_TAG_INDEX");
        Py_DECREF(mod);
        if (NO_TAG_INDEX == NULL) return NULL;
    }
    if (Array_type == NULL) {
        PyObject *mod = PyImport_ImportModule("array");
        if (mod == NULL) return NULL;
        PyObject *at = PyObject_GetAttrString(mod, "array");
        Py_DECREF(mod);
        if (at == NULL) return NULL;
        if (!PyType_Check(at)) { Py_DECREF(at); PyErr_SetString(PyExc_TypeError, "array.array"); return NULL; }
        PyObject *app = PyObject_GetAttrString(at, "append");
        if (app == NULL) { Py_DECREF(at); return NULL; }
        Array_type = (PyTypeObject *)at;  /* owned */
        Array_append = app;
        if (check_array_layout() < 0) return NULL;
    }
    Py_INCREF(tl); Py_XSETREF(Timeline_cls, tl);
    Py_INCREF(nt); Py_XSETREF(NO_TAG, nt);
    tl_state = 0;  /* the template is made again from this class at the next new_timeline */
    Py_RETURN_NONE;
}

/* register(kind, cls): where "component" (ComponentTracker) or "service" (ServiceTracker)
 * instances keep their slots; until then those are read by name. */
static PyObject *register_class(PyObject *self, PyObject *args) {
    const char *kind;
    PyObject *cls;
    if (!PyArg_ParseTuple(args, "sO!", &kind, &PyType_Type, &cls)) return NULL;
    int rc;
    if (strcmp(kind, "component") == 0) {
        rc = slot_init(&CT_NEWEST, cls) || slot_init(&CT_HISTORY, cls) || slot_init(&CT_SINCE, cls)
             || slot_init(&CT_COMPONENT, cls);
        ct_state = 0;  /* the template is read again from this class */
        ct_cls = NULL;
    }
    else if (strcmp(kind, "service") == 0)
        rc = slot_init(&SV_COMPONENTS, cls) || slot_init(&SV_DOWN, cls) || slot_init(&SV_BAD, cls)
             || slot_init(&SV_TIMELINE, cls) || slot_init(&SV_FRONTIER, cls) || slot_init(&SV_MODEL, cls);
    else {
        PyErr_Format(PyExc_ValueError, "unknown kind %s", kind);
        return NULL;
    }
    if (rc) return NULL;
    Py_RETURN_NONE;
}

/* ---- Kafka v2 record batches straight to LeanRecord tuples --------------------------
 * kafka_records(data, pos, next_offset, check_crcs, max_batches, topic, partition, cls,
 * out) -> (status, pos, next_offset)
 *
 * Why: aiokafka's C batch iterator makes a record object per record (with its key,
 * value and headers), and aiokafka_patches.lean_records_for then read six attributes of
 * it in Python and built a LeanRecord: ~0.45 us per event of the worker's CPU, on
 * Faust's consumer thread. Here the batches of a fetched partition (``data``, the bytes
 * aiokafka got from the broker) are read from ``pos`` and every record becomes a
 * ``cls`` (LeanRecord) appended to ``out``, with the same fields as aiokafka's record
 * and the same steps as PartitionRecords._unpack_records with read_uncommitted: the
 * CRC-32C of a batch checked first when ``check_crcs``, control batches skipped,
 * records before the running next offset skipped, the next offset after a batch its
 * base offset + last offset delta + 1. Only what this code reads completely is taken:
 * a batch of another magic, a compressed one, or one whose bytes do not parse exactly
 * (lengths, varints, record count, trailing bytes, a header key that is not UTF-8)
 * stops the walk at that batch's start with nothing of it in ``out``, and the caller
 * hands it to aiokafka, which reads it or raises its own error.
 *
 * status: 0 no complete batch left at ``pos`` (aiokafka ignores a trailing partial
 * batch too); 1 ``max_batches`` batches read (0: no limit); 2 the batch at ``pos`` is
 * for aiokafka; 3 the batch at ``pos`` fails its CRC check. ``next_offset`` is the
 * running next offset (after the last batch read). Records are off the cyclic
 * collector's lists (numbers, bytes and a tuple of pairs: never in a cycle). */

static uint32_t crc32c_table[8][256];
static int crc32c_ready = 0;

static void crc32c_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc32c_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc32c_table[0][n];
        for (int t = 1; t < 8; t++) {
            c = crc32c_table[0][c & 0xff] ^ (c >> 8);
            crc32c_table[t][n] = c;
        }
    }
    crc32c_ready = 1;
}

static uint32_t crc32c_soft(const unsigned char *p, Py_ssize_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n >= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        c = crc32c_table[7][lo & 0xff] ^ crc32c_table[6][(lo >> 8) & 0xff] ^ crc32c_table[5][(lo >> 16) & 0xff]
            ^ crc32c_table[4][lo >> 24] ^ crc32c_table[3][hi & 0xff] ^ crc32c_table[2][(hi >> 8) & 0xff]
            ^ crc32c_table[1][(hi >> 16) & 0xff] ^ crc32c_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n-- > 0) c = crc32c_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CRC32C_HW 1
/* The SSE 4.2 instruction, when the CPU has it (checked at run time). */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(const unsigned char *p, Py_ssize_t n) {
    uint64_t c = 0xFFFFFFFFu;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n-- > 0) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32 ^ 0xFFFFFFFFu;
}
static int crc32c_use_hw = -1;
#endif

static uint32_t crc32c(const unsigned char *p, Py_ssize_t n) {
#ifdef CRC32C_HW
    if (crc32c_use_hw < 0) {
        __builtin_cpu_init();
        crc32c_use_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    }
    if (crc32c_use_hw) return crc32c_hw(p, n);
#endif
    if (!crc32c_ready) crc32c_init();
    return crc32c_soft(p, n);
}

/* crc32c_of(bytes, soft=False): for the tests (the hardware and table paths agree with
 * aiokafka's own). */
static PyObject *crc32c_of(PyObject *self, PyObject *args) {
    Py_buffer b;
    int soft = 0;
    if (!PyArg_ParseTuple(args, "y*|p", &b, &soft)) return NULL;
    uint32_t c;
    if (soft) {
        if (!crc32c_ready) crc32c_init();
        c = crc32c_soft(b.buf, b.len);
    } else {
        c = crc32c(b.buf, b.len);
    }
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLong(c);
}

static inline int64_t be64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return (int64_t)v;
}

static inline int32_t be32(const unsigned char *p) {
    return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3]);
}

/* A zigzag varint (up to 64 bits) at *p, not past end; 0 when it does not fit. */
static inline int read_varint(const unsigned char **p, const unsigned char *end, int64_t *out) {
    uint64_t v = 0;
    int shift = 0;
    const unsigned char *q = *p;
    while (q < end) {
        unsigned char b = *q++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            *p = q;
            return 1;
        }
        shift += 7;
        if (shift > 63) return 0;
    }
    return 0;
}

/* A new instance of the tuple subclass ``cls`` holding n new references (stolen). */
static PyObject *lean_tuple(PyTypeObject *cls, PyObject **items, Py_ssize_t n) {
    PyObject *t = cls->tp_alloc(cls, n);
    if (t == NULL) {
        for (Py_ssize_t i = 0; i < n; i++) Py_DECREF(items[i]);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) PyTuple_SET_ITEM(t, i, items[i]);
    if (PyObject_GC_IsTracked(t)) PyObject_GC_UnTrack(t);
    return t;
}

/* The records of one uncompressed v2 batch (records at rec..end) into out: 1 done,
 * 0 the bytes do not parse (nothing appended, no error set), -1 a Python error. */
static int kafka_batch_records(const unsigned char *rec, const unsigned char *end, int32_t count,
                               int64_t base_offset, int64_t first_ts, int64_t max_ts, int log_append,
                               int64_t *nfo, PyObject *topic, PyObject *partition, PyObject *ts_type,
                               PyTypeObject *cls, PyObject *out) {
    Py_ssize_t start_len = PyList_GET_SIZE(out);
    int64_t running = *nfo;
    PyObject *last_ts = NULL;  /* the previous record's timestamp object, shared when equal */
    int64_t last_ts_v = 0;
    const unsigned char *p = rec;
    for (int32_t i = 0; i < count; i++) {
        int64_t length, attrs_unused, ts_delta, off_delta, klen, vlen, nh;
        if (!read_varint(&p, end, &length) || length < 0 || length > end - p) goto bad;
        const unsigned char *rstart = p, *rend = p + length;
        /* Int8 in the format, a varint to aiokafka's reader: the same byte when < 0x80
         * (producers write 0); anything else is left to aiokafka */
        if (rend - p < 1 || (*p & 0x80)) goto bad;
        attrs_unused = *p++;
        (void)attrs_unused;
        if (!read_varint(&p, rend, &ts_delta) || !read_varint(&p, rend, &off_delta)) goto bad;
        if (!read_varint(&p, rend, &klen) || klen > rend - p) goto bad;
        const unsigned char *kp = p;
        if (klen > 0) p += klen;
        if (!read_varint(&p, rend, &vlen) || vlen > rend - p) goto bad;
        const unsigned char *vp = p;
        if (vlen > 0) p += vlen;
        if (!read_varint(&p, rend, &nh) || nh < 0) goto bad;
        PyObject *headers;
        if (nh == 0) {
            headers = PyTuple_New(0);  /* the shared empty tuple */
            if (headers == NULL) goto error;
        } else {
            headers = PyList_New(0);
            if (headers == NULL) goto error;
            for (int64_t h = 0; h < nh; h++) {
                int64_t hk, hv;
                if (!read_varint(&p, rend, &hk) || hk < 0 || hk > rend - p) { Py_DECREF(headers); goto bad; }
                PyObject *hkey = PyUnicode_DecodeUTF8((const char *)p, hk, NULL);
                if (hkey == NULL) { PyErr_Clear(); Py_DECREF(headers); goto bad; }
                p += hk;
                if (!read_varint(&p, rend, &hv) || hv > rend - p) { Py_DECREF(hkey); Py_DECREF(headers); goto bad; }
                PyObject *hval;
                if (hv >= 0) {
                    hval = PyBytes_FromStringAndSize((const char *)p, hv);
                    p += hv;
                } else {
                    hval = Py_NewRef(Py_None);
                }
                PyObject *pair = hval == NULL ? NULL : PyTuple_Pack(2, hkey, hval);
                Py_DECREF(hkey);
                Py_XDECREF(hval);
                if (pair == NULL || PyList_Append(headers, pair) < 0) { Py_XDECREF(pair); Py_DECREF(headers); goto error; }
                Py_DECREF(pair);
            }
        }
        if (p - rstart != length) { Py_DECREF(headers); goto bad; }
        int64_t offset = base_offset + off_delta;
        if (offset < running) {  /* before the fetch offset (or a repeat): skipped */
            Py_DECREF(headers);
            continue;
        }
        running = offset + 1;
        int64_t ts = log_append ? max_ts : first_ts + ts_delta;
        PyObject *items[8];
        items[0] = Py_NewRef(topic);
        items[1] = Py_NewRef(partition);
        items[2] = PyLong_FromLongLong(offset);
        if (last_ts != NULL && ts == last_ts_v) {
            items[3] = Py_NewRef(last_ts);
        } else {
            items[3] = PyLong_FromLongLong(ts);
            if (items[3] != NULL) { Py_XSETREF(last_ts, Py_NewRef(items[3])); last_ts_v = ts; }
        }
        items[4] = Py_NewRef(ts_type);
        items[5] = klen >= 0 ? PyBytes_FromStringAndSize((const char *)kp, klen) : Py_NewRef(Py_None);
        items[6] = vlen >= 0 ? PyBytes_FromStringAndSize((const char *)vp, vlen) : Py_NewRef(Py_None);
        items[7] = headers;
        if (items[2] == NULL || items[3] == NULL || items[5] == NULL || items[6] == NULL) {
            for (int k = 0; k < 8; k++) Py_XDECREF(items[k]);
            goto error;
        }
        PyObject *t = lean_tuple(cls, items, 8);
        if (t == NULL) goto error;
        int rc = PyList_Append(out, t);
        Py_DECREF(t);
        if (rc < 0) goto error;
    }
    if (p != end) goto bad;
    Py_XDECREF(last_ts);
    *nfo = running;
    return 1;
bad:
    Py_XDECREF(last_ts);
    if (PyList_SetSlice(out, start_len, PyList_GET_SIZE(out), NULL) < 0) return -1;
    return 0;
error:
    Py_XDECREF(last_ts);
    return -1;
}

static PyObject *kafka_records(PyObject *self, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t pos, max_batches;
    long long nfo_in;
    int check;
    PyObject *topic, *partition, *out;
    PyTypeObject *cls;
    if (!PyArg_ParseTuple(args, "y*nLpnOOO!O!", &buf, &pos, &nfo_in, &check, &max_batches, &topic,
                          &partition, &PyType_Type, &cls, &PyList_Type, &out))
        return NULL;
    if (!PyType_IsSubtype(cls, &PyTuple_Type) || cls->tp_basicsize != PyTuple_Type.tp_basicsize
        || cls->tp_itemsize != PyTuple_Type.tp_itemsize || cls->tp_dictoffset != 0) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_TypeError, "kafka_records: cls must be a tuple subclass without a __dict__");
        return NULL;
    }
    static PyObject *ts_types[2] = {NULL, NULL};
    if (ts_types[0] == NULL) {
        if ((ts_types[0] = PyLong_FromLong(0)) == NULL || (ts_types[1] = PyLong_FromLong(1)) == NULL) {
            PyBuffer_Release(&buf);
            return NULL;
        }
    }
    const unsigned char *data = buf.buf;
    Py_ssize_t n = buf.len;
    int64_t nfo = nfo_in;
    Py_ssize_t batches = 0;
    int status = 0;
    if (pos < 0) pos = n;
    while (1) {
        if (max_batches > 0 && batches >= max_batches) { status = 1; break; }
        if (n - pos < 12) { status = 0; break; }
        int32_t length = be32(data + pos + 8);
        if ((int64_t)length > (int64_t)(n - pos - 12)) { status = 0; break; }
        /* 61 - 12: a v2 batch header; anything shorter (or another magic) is aiokafka's */
        if (length < 49 || data[pos + 16] != 2) { status = 2; break; }
        const unsigned char *b = data + pos, *bend = data + pos + 12 + length;
        int attrs = (int)((uint16_t)(b[21] << 8 | b[22]));
        if (check && (uint32_t)be32(b + 17) != crc32c(b + 21, bend - (b + 21))) { status = 3; break; }
        int64_t base = be64(b);
        int64_t next_offset = base + be32(b + 23) + 1;
        if (attrs & 0x20) {  /* control batch: skipped whatever the isolation level */
            nfo = next_offset;
            pos += 12 + length;
            batches++;
            continue;
        }
        if (attrs & 0x07) { status = 2; break; }  /* compressed */
        int32_t count = be32(b + 57);
        if (count < 0) { status = 2; break; }
        int rc = kafka_batch_records(b + 61, bend, count, base, be64(b + 27), be64(b + 35),
                                     (attrs & 0x08) != 0, &nfo, topic, partition,
                                     ts_types[(attrs & 0x08) ? 1 : 0], cls, out);
        if (rc < 0) { PyBuffer_Release(&buf); return NULL; }
        if (rc == 0) { status = 2; break; }
        nfo = next_offset;
        pos += 12 + length;
        batches++;
    }
    PyBuffer_Release(&buf);
    return Py_BuildValue("inL", status, pos, (long long)nfo);
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS, "setup(Timeline, NO_TAG)"},
    {"new_timeline", new_timeline, METH_NOARGS, "Timeline(), made from a template (see _native.c)"},
    {"array_fast", get_array_fast, METH_VARARGS, "whether columns are appended to in place"},
    {"register", register_class, METH_VARARGS, "register(kind, cls)"},
    {"untrack", (PyCFunction)(void (*)(void))untrack, METH_FASTCALL, "take objects off the cyclic collector's lists"},
    {"apply_in_order", apply_in_order, METH_VARARGS, "stage 1's in-order path"},
    {"apply_many", svc_apply_many, METH_VARARGS, "ServiceTracker.apply_many"},
    {"columns_raw", columns_raw, METH_VARARGS, "decode_columns without dicts for plain messages"},
    {"is_in_time_order", is_in_time_order, METH_O, "segments open-ended and sorted by start"},
    {"encode_segments", encode_segments, METH_O, "the columns of segwire.encode_many"},
    {"time_ordered", time_ordered, METH_VARARGS, "open-ended segment columns as tuples sorted by start"},
    {"apply_columns", svc_apply_columns, METH_VARARGS, "apply_many of open-ended segment columns in time order"},
    {"apply_services", apply_services, METH_VARARGS, "stage 2's services of a fetch, each as stage2.apply"},
    {"split_columns", split_columns, METH_VARARGS, "decode_many's per-service columns of a message"},
    {"small_records", small_records, METH_VARARGS, "ComponentTracker.small_record of each tracker of a list"},
    {"small_writes", small_writes, METH_VARARGS, "TrackerTable._write_partition's path for small objects"},
    {"new_tracker", new_tracker, METH_VARARGS, "cls(comp) for the registered component class, without its __init__"},
    {"segment_ids", segment_ids, METH_VARARGS, "the component ids of a segments message, interned"},
    {"ids_forget", ids_forget, METH_NOARGS, "empty the decoders' table of component ids"},
    {"plan_memo", plan_memo, METH_O, "a plan's blame memo (tests)"},
    {"float_kinds", float_kinds, METH_O, "(any NaN, any infinity) of a buffer of doubles"},
    {"float_min", float_min, METH_O, "the least of a buffer of doubles, None if empty"},
    {"compact_keep", compact_keep, METH_VARARGS, "the points a component compaction keeps, None if all"},
    {"recompute", svc_recompute, METH_VARARGS, "ServiceTracker._recompute"},
    {"compile_plan", compile_plan, METH_VARARGS, "a model's plan for apply_many"},
    {"evaluate_plan", evaluate_plan, METH_VARARGS, "state of a plan for (down, bad)"},
    {"blame_plan", blame_plan, METH_VARARGS, "blamed names of a plan for a down mask"},
    {"sums_extend", sums_extend, METH_VARARGS, "the kept prefix sums of a timeline's new blocks"},
    {"sums_at", sums_at, METH_VARARGS, "a timeline's prefix sums at a point"},
    {"windows_many", windows_many, METH_VARARGS, "states and window ratios of many timelines"},
    {"put_texts", put_texts, METH_VARARGS, "pieces of texts between fixed strings, into a list"},
    {"att_whole", att_whole, METH_VARARGS, "the attribution index's whole pieces, added to a dict"},
    {"att_extend", att_extend, METH_VARARGS, "pieces added to a timeline's attribution index"},
    {"put_choices", put_choices, METH_VARARGS, "one of some objects into a list at each index"},
    {"plain_floats", plain_floats, METH_VARARGS, "whether floats are 0 or of a magnitude in a range"},
    {"odd_floats", odd_floats, METH_VARARGS, "indexes of floats not 0 nor of a magnitude in a range"},
    {"lines_until", lines_until, METH_VARARGS, "until when a history's window ratios stay"},
    {"stored_hits", stored_hits, METH_VARARGS, "a tracker table's decoded-cache hits"},
    {"cached_many", cached_many, METH_VARARGS, "TrackerTable.get_many's decoded-cache hits"},
    {"not_memo", not_memo, METH_VARARGS, "keys a dict does not map to an int"},
    {"lines_codes_many", lines_codes_many, METH_VARARGS,
     "lines_until of many component trackers, with the windows at 0.0 and the state"},
    {"service_families", service_families, METH_VARARGS, "the service families' lines"},
    {"tags_used", tags_used, METH_VARARGS, "distinct tag indexes of a tag column"},
    {"day_segments", day_segments, METH_VARARGS, "Account.add_segments over a view's columns"},
    {"kafka_records", kafka_records, METH_VARARGS, "the records of fetched Kafka v2 batches as LeanRecord tuples"},
    {"crc32c_of", crc32c_of, METH_VARARGS, "CRC-32C of bytes (the tests compare it with aiokafka's)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods};

#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL

PyMODINIT_FUNC PyInit__native(void) {
    INTERN(s_compact, "compact"); INTERN(s_append_state, "append_state"); INTERN(s_assign, "assign");
    INTERN(s_settle, "_settle"); INTERN(s_assign_columns, "assign_columns"); INTERN(s_intern, "intern"); INTERN(s_blame_mask, "blame_mask"); INTERN(s_plan, "plan");
    INTERN(s_build, "_build"); INTERN(s_get, "get"); INTERN(s_bind, "bind");
    INTERN(s_apply_columns, "apply_columns"); INTERN(s_small_record, "small_record");
    INTERN(UNMAPPED, "unmapped");
    INTERN(s_component, "component"); INTERN(s_state, "state"); INTERN(s_ts_key, "ts");
    INTERN(s_source, "source"); INTERN(s_id, "id");

    if (slot_name(&TL_TS, "ts") || slot_name(&TL_ST, "st") || slot_name(&TL_TAG, "tag") || slot_name(&TL_GX, "_gx") || slot_name(&TL_TAGS, "tags")
        || slot_name(&TL_SUMS, "_sums") || slot_name(&TL_VALID, "_valid")
        || slot_name(&CT_NEWEST, "newest") || slot_name(&CT_HISTORY, "history")
        || slot_name(&CT_SINCE, "_since_compact") || slot_name(&CT_COMPONENT, "component") || slot_name(&SV_COMPONENTS, "components")
        || slot_name(&SV_DOWN, "_down") || slot_name(&SV_BAD, "_bad")
        || slot_name(&SV_TIMELINE, "timeline") || slot_name(&SV_FRONTIER, "frontier")
        || slot_name(&SV_MODEL, "_model"))
        return NULL;
    for (int c = 0x20; c < 0x7f; c++) plain_byte[c] = c != '"' && c != '\\';
    if ((INF_obj = PyFloat_FromDouble(INFINITY)) == NULL) return NULL;
    for (int i = 0; i < 3; i++)
        if ((STATE_INT[i] = PyLong_FromLong(i)) == NULL) return NULL;
    if (PyType_Ready(&OrderedIter_Type) < 0) return NULL;
    return PyModule_Create(&module);
}
