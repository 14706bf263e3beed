/* lockfree/stack.c — tagged-index Treiber stack; see stack.h for the rules,
 * the ABA argument and the ordering of every atomic field. */
#include <errno.h>
#include <stdlib.h>
#include "stack.h"
#include "../fc/status.h"

#define TAG_OF(h)   ((uint32_t)((h) >> 32))
#define IDX1_OF(h)  ((uint32_t)(h))
#define MAKE(tag, idx1) (((uint64_t)(tag) << 32) | (uint64_t)(idx1))

/* Chunk k covers indices [BASE * (2^k - 1), BASE * (2^(k+1) - 1)). */
static inline unsigned chunk_of(uint64_t i, uint64_t *off) {
    uint64_t j = i / FC_STACK_BASE + 1;
    unsigned k = 63u - (unsigned)__builtin_clzll(j);
    *off = i - (uint64_t)FC_STACK_BASE * ((1ull << k) - 1);
    return k;
}

/* The node of a published index (its chunk exists). */
static inline fc_stack_node_t *node_at(fc_stack_t *s, uint32_t idx) {
    uint64_t off;
    unsigned k = chunk_of(idx, &off);
    /* acquire: pairs with the publishing CAS in fresh_node(). */
    fc_stack_node_t *c = fc_atomic_load_acq(&s->chunks[k]);
    return &c[off];
}

int fc_stack_init(fc_stack_t *s, size_t maxsize) {
    unsigned k;
    if (maxsize == 0) maxsize = FC_STACK_MAX;
    if ((uint64_t)maxsize > FC_STACK_MAX) return -EINVAL;
    fc_atomic_init(&s->top, 0);
    fc_atomic_init(&s->free, 0);
    fc_atomic_init(&s->hwm, 0);
    fc_atomic_init(&s->count, 0);
    s->maxsize = maxsize;
    for (k = 0; k < FC_STACK_CHUNKS; k++) fc_atomic_init(&s->chunks[k], NULL);
    return FC_OK;
}

void fc_stack_destroy(fc_stack_t *s) {
    unsigned k;
    for (k = 0; k < FC_STACK_CHUNKS; k++) {
        free(fc_atomic_load_rlx(&s->chunks[k]));   /* sole owner now */
        fc_atomic_store_rlx(&s->chunks[k], NULL);
    }
}

/* Push node idx onto the list headed by *head (top or free). */
static inline void list_push(fc_stack_t *s, _Atomic uint64_t *head, uint32_t idx) {
    fc_stack_node_t *n = node_at(s, idx);
    uint64_t h = fc_atomic_load_rlx(head);     /* the CAS below validates it */
    for (;;) {
        fc_atomic_store_rlx(&n->next, IDX1_OF(h));
        /* acq_rel: release publishes n->value and n->next to the popper
         * whose acquire load/CAS of *head sees this node (list_pop). */
        if (fc_atomic_cas_weak_acqrel_acq(head, &h, MAKE(TAG_OF(h) + 1, idx + 1)))
            return;
    }
}

/* Pop a node index from *head; false when the list is empty. */
static inline bool list_pop(fc_stack_t *s, _Atomic uint64_t *head, uint32_t *idx) {
    /* acquire: pairs with the release CAS of the push that installed the
     * node we read next from (directly or through its release sequence). */
    uint64_t h = fc_atomic_load_acq(head);
    for (;;) {
        uint32_t i1 = IDX1_OF(h), next;
        if (i1 == 0) return false;
        /* May read a recycled node: then the tag moved and the CAS fails. */
        next = fc_atomic_load_rlx(&node_at(s, i1 - 1)->next);
        if (fc_atomic_cas_weak_acqrel_acq(head, &h, MAKE(TAG_OF(h) + 1, next))) {
            *idx = i1 - 1;
            return true;
        }
    }
}

/* A never-used index with its chunk allocated; false when maxsize is reached. */
static int fresh_node(fc_stack_t *s, uint32_t *idx) {
    uint64_t i = fc_atomic_fetch_add_rlx(&s->hwm, 1), off;
    unsigned k;
    fc_stack_node_t *c;
    if (i >= s->maxsize) return FC_STACK_FULL;
    k = chunk_of(i, &off);
    c = fc_atomic_load_acq(&s->chunks[k]);
    if (c == NULL) {
        fc_stack_node_t *expect = NULL;
        fc_stack_node_t *mine = (fc_stack_node_t *)calloc((size_t)FC_STACK_BASE << k,
                                                          sizeof(fc_stack_node_t));
        if (!mine) {
            /* The index cannot be given back (others may have moved hwm
             * on): it is lost, which only lowers the effective bound. */
            return FC_ENOMEM_OWN;
        }
        /* acq_rel: release publishes the zeroed chunk to node_at()'s
         * acquire; acquire (on failure) makes the winner's chunk visible. */
        if (!fc_atomic_cas_strong_acqrel_acq(&s->chunks[k], &expect, mine))
            free(mine);
    }
    *idx = (uint32_t)i;
    return FC_OK;
}

int fc_stack_push(fc_stack_t *s, void *item) {
    uint32_t idx;
    if (!list_pop(s, &s->free, &idx)) {
        int rc = fresh_node(s, &idx);
        if (rc != FC_OK) {
            /* A pop may have freed a node since we looked. */
            if (!list_pop(s, &s->free, &idx)) return rc;
        }
    }
    node_at(s, idx)->value = item;              /* we own the node: plain store */
    list_push(s, &s->top, idx);
    fc_atomic_fetch_add_rlx(&s->count, 1);
    return FC_OK;
}

bool fc_stack_pop(fc_stack_t *s, void **out) {
    uint32_t idx;
    fc_stack_node_t *n;
    if (!list_pop(s, &s->top, &idx)) return false;
    n = node_at(s, idx);
    *out = n->value;                            /* we own the node now */
    n->value = NULL;
    fc_atomic_fetch_sub_rlx(&s->count, 1);
    list_push(s, &s->free, idx);
    return true;
}

size_t fc_stack_size(fc_stack_t *s) {
    int64_t c = fc_atomic_load_rlx(&s->count);
    return c > 0 ? (size_t)c : 0;
}
