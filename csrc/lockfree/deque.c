/* lockfree/deque.c — Chase-Lev deque, Lê et al. 2013 Fig. 1 orderings; see
 * deque.h for the rules and why each order is what it is. */
#include <stdlib.h>
#include "deque.h"
#include "../fc/status.h"

static fc_deque_array_t *array_new(int64_t size) {
    fc_deque_array_t *a = (fc_deque_array_t *)malloc(sizeof(*a) + (size_t)size * sizeof(void *));
    int64_t i;
    if (!a) return NULL;
    a->size = size;
    a->prev = NULL;
    for (i = 0; i < size; i++) fc_atomic_init(&a->buf[i], NULL);
    return a;
}

int fc_deque_init(fc_deque_t *q, size_t cap) {
    int64_t n = 16;
    fc_deque_array_t *a;
    while ((size_t)n < cap) n <<= 1;
    a = array_new(n);
    if (!a) return FC_ENOMEM_OWN;
    fc_atomic_init(&q->top, 0);
    fc_atomic_init(&q->bottom, 0);
    fc_atomic_init(&q->array, a);
    return FC_OK;
}

void fc_deque_destroy(fc_deque_t *q) {
    fc_deque_array_t *a = fc_atomic_load_rlx(&q->array), *p;
    while (a) { p = a->prev; free(a); a = p; }
    fc_atomic_store_rlx(&q->array, NULL);
}

/* Owner: copy items t..b-1 into an array twice the size and publish it. */
static fc_deque_array_t *grow(fc_deque_t *q, fc_deque_array_t *a, int64_t t, int64_t b) {
    fc_deque_array_t *n = array_new(a->size * 2);
    int64_t i;
    if (!n) return NULL;
    for (i = t; i < b; i++)
        fc_atomic_store_rlx(&n->buf[i & (n->size - 1)],
                            fc_atomic_load_rlx(&a->buf[i & (a->size - 1)]));
    n->prev = a;
    /* release: pairs with steal's load(acquire) of array. */
    fc_atomic_store_rel(&q->array, n);
    return n;
}

int fc_deque_push(fc_deque_t *q, void *item) {
    int64_t b = fc_atomic_load_rlx(&q->bottom);          /* own field */
    /* acquire: pairs with a thief's CAS on top; its slot read precedes our
     * overwrite of that slot. */
    int64_t t = fc_atomic_load_acq(&q->top);
    fc_deque_array_t *a = fc_atomic_load_rlx(&q->array); /* own field */
    if (b - t > a->size - 1) {
        a = grow(q, a, t, b);
        if (!a) return FC_ENOMEM_OWN;
    }
    fc_atomic_store_rlx(&a->buf[b & (a->size - 1)], item);
    /* fence(release) + relaxed store: publishes the slot; pairs with steal's
     * load(acquire) of bottom. */
    fc_atomic_store_fenced_rel(&q->bottom, b + 1);
    return FC_OK;
}

int fc_deque_take(fc_deque_t *q, void **out) {
    int64_t b = fc_atomic_load_rlx(&q->bottom) - 1;
    fc_deque_array_t *a = fc_atomic_load_rlx(&q->array);
    int64_t t;
    int rc = FC_OK;
    fc_atomic_store_rlx(&q->bottom, b);
    /* seq_cst fence: orders the bottom store before the top load; pairs with
     * the seq_cst fence in steal (between its top and bottom loads). */
    fc_atomic_fence_sc();
    t = fc_atomic_load_rlx(&q->top);
    if (t <= b) {
        void *x = fc_atomic_load_rlx(&a->buf[b & (a->size - 1)]);
        if (t == b) {
            /* Last item: race the thieves for it with their own CAS. */
            if (!fc_atomic_cas_strong_sc_rlx(&q->top, &t, t + 1)) rc = FC_DEQUE_EMPTY;
            fc_atomic_store_rlx(&q->bottom, b + 1);
        }
        if (rc == FC_OK) *out = x;
    } else {
        rc = FC_DEQUE_EMPTY;
        fc_atomic_store_rlx(&q->bottom, b + 1);
    }
    return rc;
}

int fc_deque_steal(fc_deque_t *q, void **out) {
    /* acquire: pairs with the CAS(seq_cst) on top of other thieves/the owner. */
    int64_t t = fc_atomic_load_acq(&q->top);
    int64_t b;
    /* seq_cst fence: pairs with take's fence (see there). */
    fc_atomic_fence_sc();
    /* acquire: pairs with push's release publication of bottom. */
    b = fc_atomic_load_acq(&q->bottom);
    if (t < b) {
        /* acquire (the paper's consume): pairs with grow's release store. */
        fc_deque_array_t *a = fc_atomic_load_acq(&q->array);
        void *x = fc_atomic_load_rlx(&a->buf[t & (a->size - 1)]);
        if (!fc_atomic_cas_strong_sc_rlx(&q->top, &t, t + 1)) return FC_DEQUE_ABORT;
        *out = x;
        return FC_OK;
    }
    return FC_DEQUE_EMPTY;
}

size_t fc_deque_size(fc_deque_t *q) {
    int64_t t = fc_atomic_load_rlx(&q->top);
    int64_t b = fc_atomic_load_rlx(&q->bottom);
    return b > t ? (size_t)(b - t) : 0;
}
