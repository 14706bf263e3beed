/* fc/ring.h — a growable FIFO of void* (the loop's ready queue).
 *
 * Single-threaded: the owner (the loop's thread, holding the GIL) is the only
 * caller.  The ring does not own what the pointers point to; the Cython side
 * takes a reference on push and hands it over on pop.
 * Invariant: cap is a power of two; 0 <= len <= cap; items live at
 * (head + i) & (cap - 1) for i < len.
 */
#ifndef FC_RING_H
#define FC_RING_H
#include <stdlib.h>
#include <string.h>
#include "status.h"

typedef struct {
    void **buf;
    size_t cap, head, len;
} fc_ring_t;

static inline int fc_ring_init(fc_ring_t *r, size_t cap) {
    size_t c = 16;
    while (c < cap) c <<= 1;
    r->buf = (void **)malloc(c * sizeof(void *));
    if (!r->buf) return FC_ENOMEM_OWN;
    r->cap = c; r->head = 0; r->len = 0;
    return FC_OK;
}

static inline void fc_ring_free(fc_ring_t *r) {
    free(r->buf);
    r->buf = NULL; r->cap = r->head = r->len = 0;
}

static inline int fc_ring_grow(fc_ring_t *r) {
    size_t nc = r->cap * 2, i;
    void **nb = (void **)malloc(nc * sizeof(void *));
    if (!nb) return FC_ENOMEM_OWN;
    for (i = 0; i < r->len; i++) nb[i] = r->buf[(r->head + i) & (r->cap - 1)];
    free(r->buf);
    r->buf = nb; r->cap = nc; r->head = 0;
    return FC_OK;
}

static inline int fc_ring_push(fc_ring_t *r, void *p) {
    if (r->len == r->cap && fc_ring_grow(r) != FC_OK) return FC_ENOMEM_OWN;
    r->buf[(r->head + r->len) & (r->cap - 1)] = p;
    r->len++;
    return FC_OK;
}

/* Caller checks len > 0 first. */
static inline void *fc_ring_pop(fc_ring_t *r) {
    void *p = r->buf[r->head];
    r->head = (r->head + 1) & (r->cap - 1);
    r->len--;
    return p;
}

/* Give memory back after a burst: an empty ring larger than `keep` slots
 * goes back to `keep` (a power of two).  Failure to allocate is harmless. */
static inline void fc_ring_shrink(fc_ring_t *r, size_t keep) {
    void **nb;
    if (r->len != 0 || r->cap <= keep) return;
    nb = (void **)malloc(keep * sizeof(void *));
    if (!nb) return;
    free(r->buf);
    r->buf = nb; r->cap = keep; r->head = 0;
}

/* i-th item from the head (i < len); for GC traversal. */
static inline void *fc_ring_at(const fc_ring_t *r, size_t i) {
    return r->buf[(r->head + i) & (r->cap - 1)];
}

static inline size_t fc_ring_len(const fc_ring_t *r) { return r->len; }

#endif
