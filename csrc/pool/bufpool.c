/* pool/bufpool.c — size-class buffer pool over lock-free stacks; see
 * bufpool.h for the rules, the lifetime protocol and the atomic fields. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include "bufpool.h"
#include "../fc/status.h"

#define MAGIC_LIVE 0x46434255u  /* "FCBU": handed out */
#define MAGIC_FREE 0x46434246u  /* "FCBF": cached in the pool, or freed */
#define OVERSIZE   0xFFFFFFFFu  /* class of a malloc'd >1 MiB buffer */

typedef struct {
    uint32_t magic;
    uint32_t cls;               /* class index, or OVERSIZE */
    uint64_t cap;               /* usable bytes after the header */
    fc_bufpool_t *pool;
    char pad[FC_BUFPOOL_HEADER - 2 * sizeof(uint32_t) - sizeof(uint64_t) - sizeof(void *)];
} hdr_t;

_Static_assert(sizeof(hdr_t) == FC_BUFPOOL_HEADER, "header must keep data aligned");

struct fc_bufpool {
    fc_stack_t cls[FC_BUFPOOL_NCLASSES];
    _Atomic int64_t refs;
    _Atomic int closed;
    _Atomic uint64_t hits, misses, frees;
};

/* C11 aligned_alloc wants the size to be a multiple of the alignment. */
static inline size_t round_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }

static inline hdr_t *hdr_of(const void *buf) { return (hdr_t *)((char *)buf - FC_BUFPOOL_HEADER); }

static inline unsigned class_of(size_t size) {
    unsigned s = FC_BUFPOOL_MIN_SHIFT;
    if (size <= ((size_t)1 << FC_BUFPOOL_MIN_SHIFT)) return 0;
    s = 64u - (unsigned)__builtin_clzll((unsigned long long)(size - 1));   /* ceil(log2) */
    return s - FC_BUFPOOL_MIN_SHIFT;
}

static void *new_buffer(fc_bufpool_t *p, uint32_t cls, size_t cap) {
    hdr_t *h = (hdr_t *)aligned_alloc(FC_BUFPOOL_HEADER,
                                      round_up(FC_BUFPOOL_HEADER + cap, FC_BUFPOOL_HEADER));
    if (!h) return NULL;
    h->cls = cls;
    h->cap = cap;
    h->pool = p;
    return (char *)h + FC_BUFPOOL_HEADER;
}

int fc_bufpool_create(fc_bufpool_t **out, size_t max_cached_bytes) {
    fc_bufpool_t *p = (fc_bufpool_t *)aligned_alloc(FC_CACHELINE,
                                                        round_up(sizeof(fc_bufpool_t), FC_CACHELINE));
    unsigned k;
    if (!p) return FC_ENOMEM_OWN;
    if (max_cached_bytes == 0) max_cached_bytes = (size_t)4 << 20;
    for (k = 0; k < FC_BUFPOOL_NCLASSES; k++) {
        size_t n = max_cached_bytes >> (k + FC_BUFPOOL_MIN_SHIFT);
        if (n < FC_BUFPOOL_MIN_CACHED) n = FC_BUFPOOL_MIN_CACHED;
        fc_stack_init(&p->cls[k], n);
    }
    fc_atomic_init(&p->refs, 1);
    fc_atomic_init(&p->closed, 0);
    fc_atomic_init(&p->hits, 0);
    fc_atomic_init(&p->misses, 0);
    fc_atomic_init(&p->frees, 0);
    *out = p;
    return FC_OK;
}

static void drain(fc_bufpool_t *p) {
    unsigned k;
    void *buf;
    for (k = 0; k < FC_BUFPOOL_NCLASSES; k++)
        while (fc_stack_pop(&p->cls[k], &buf)) {
            hdr_of(buf)->magic = MAGIC_FREE;
            free(hdr_of(buf));
        }
}

static void unref(fc_bufpool_t *p) {
    /* acq_rel: see bufpool.h (refcount argument). */
    if (fc_atomic_fetch_sub_acqrel(&p->refs, 1) == 1) {
        unsigned k;
        drain(p);               /* a release that raced destroy may have cached */
        for (k = 0; k < FC_BUFPOOL_NCLASSES; k++) fc_stack_destroy(&p->cls[k]);
        free(p);
    }
}

void fc_bufpool_destroy(fc_bufpool_t *p) {
    fc_atomic_store_rel(&p->closed, 1);     /* pairs: load_acq in release */
    drain(p);
    unref(p);
}

void *fc_bufpool_acquire(fc_bufpool_t *p, size_t size, size_t *cap) {
    void *buf;
    if (size > ((size_t)1 << FC_BUFPOOL_MAX_SHIFT)) {
        buf = new_buffer(p, OVERSIZE, size);
        fc_atomic_fetch_add_rlx(&p->misses, 1);
    } else {
        unsigned k = class_of(size);
        if (fc_stack_pop(&p->cls[k], &buf)) {
            fc_atomic_fetch_add_rlx(&p->hits, 1);
        } else {
            buf = new_buffer(p, k, (size_t)1 << (k + FC_BUFPOOL_MIN_SHIFT));
            fc_atomic_fetch_add_rlx(&p->misses, 1);
        }
    }
    if (!buf) return NULL;
    hdr_of(buf)->magic = MAGIC_LIVE;
    fc_atomic_fetch_add_rlx(&p->refs, 1);   /* the caller's reference keeps p alive */
    if (cap) *cap = (size_t)hdr_of(buf)->cap;
    return buf;
}

int fc_bufpool_release(void *buf) {
    hdr_t *h;
    fc_bufpool_t *p;
    if (!buf) return -EINVAL;
    h = hdr_of(buf);
    assert(h->magic == MAGIC_LIVE && "fc_bufpool_release: not a live pool buffer");
    if (h->magic != MAGIC_LIVE) return -EINVAL;
    p = h->pool;
    h->magic = MAGIC_FREE;
    if (h->cls == OVERSIZE || fc_atomic_load_acq(&p->closed)
            || fc_stack_push(&p->cls[h->cls], buf) != FC_OK) {
        free(h);
        fc_atomic_fetch_add_rlx(&p->frees, 1);
    }
    unref(p);
    return FC_OK;
}

size_t fc_bufpool_capacity(const void *buf) { return (size_t)hdr_of(buf)->cap; }

void fc_bufpool_stats(fc_bufpool_t *p, fc_bufpool_stats_t *out) {
    unsigned k;
    out->hits = fc_atomic_load_rlx(&p->hits);
    out->misses = fc_atomic_load_rlx(&p->misses);
    out->frees = fc_atomic_load_rlx(&p->frees);
    {
        int64_t r = fc_atomic_load_rlx(&p->refs) - 1;
        out->outstanding = r > 0 ? (uint64_t)r : 0;
    }
    out->cached = out->cached_bytes = 0;
    for (k = 0; k < FC_BUFPOOL_NCLASSES; k++) {
        size_t n = fc_stack_size(&p->cls[k]);
        out->cached += n;
        out->cached_bytes += (uint64_t)n << (k + FC_BUFPOOL_MIN_SHIFT);
    }
}
