/* lockfree/spsc.h — single-producer single-consumer ring buffers:
 * fc_spsc_t moves void* items, fc_bring_t moves bytes.
 *
 * Rules.
 *   - At most one thread pushes (writes) and at most one thread pops (reads)
 *     at any instant.  Which thread may change over time, provided the
 *     hand-over itself synchronizes (a mutex, a join, a CAS on a flag: the
 *     Cython side guards each end with an atomic busy flag, so a second
 *     concurrent caller gets an error instead of corrupting the ring).
 *   - Never blocks, never allocates after init; wait-free on both ends.
 *   - The item ring owns nothing (opaque pointers; Cython moves references).
 *
 * Theory of operation (Lamport 1977, "Proving the correctness of
 * multiprocess programs", with the cached-index refinement of
 * Lee et al. / folly's ProducerConsumerQueue and Rigtorp's SPSCQueue).
 * `tail` counts items ever pushed, `head` items ever popped; both only grow
 * (64 bits: no wrap in practice).  The ring holds tail - head items, at most
 * `cap`.  Storage is rounded up to a power of two so that position p lives
 * at p & mask; `cap` (the user's bound) may be smaller than the storage.
 * Each side keeps a private copy of the other side's counter and rereads the
 * shared one only when the copy says full (producer) or empty (consumer), so
 * in steady state the two cache lines are not bounced on every item.
 *
 * Atomic fields (each release names its acquire):
 *   tail: written by the producer only — store(release) after the slot is
 *         filled; pairs with the consumer's load(acquire) of tail, which makes
 *         the slot contents visible to it.  The producer reads its own tail
 *         relaxed (nobody else writes it).
 *   head: written by the consumer only — store(release) after the slot was
 *         read; pairs with the producer's load(acquire) of head, so the
 *         producer's next write to that slot happens after the read.
 */
#ifndef FC_LOCKFREE_SPSC_H
#define FC_LOCKFREE_SPSC_H
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../fc/atomic.h"
#include "../fc/status.h"

static inline uint64_t fc_spsc_pow2(uint64_t n) {
    uint64_t c = 1;
    while (c < n) c <<= 1;
    return c;
}

/* ---- end guard ------------------------------------------------------------ */

/* A busy flag for one end of a ring, for callers that cannot promise "one
 * thread per end" (Python code): enter fails instead of letting two threads
 * run the same end at once.  `busy`: written by the end's callers —
 * exchange(acquire) on enter, store(release) on leave; the acquire pairs with
 * the previous holder's release, so the end's private fields (tail/head
 * caches) written by the previous holder are visible to the next. */
typedef struct { _Atomic int busy; } fc_guard_t;

static inline void fc_guard_init(fc_guard_t *g) { fc_atomic_init(&g->busy, 0); }
static inline bool fc_guard_enter(fc_guard_t *g) { return fc_atomic_xchg_acq(&g->busy, 1) == 0; }
static inline void fc_guard_leave(fc_guard_t *g) { fc_atomic_store_rel(&g->busy, 0); }

/* ---- items ---------------------------------------------------------------- */

typedef struct {
    void **buf;
    uint64_t cap, mask;                 /* immutable after init */
    char pad0[FC_CACHELINE - 2 * sizeof(uint64_t) - sizeof(void *)];
    _Atomic uint64_t tail;              /* producer writes, consumer reads */
    uint64_t head_cache;                /* producer-private copy of head */
    fc_guard_t pguard;                  /* optional: producer-end busy flag */
    char pad1[FC_CACHELINE - 2 * sizeof(uint64_t) - sizeof(fc_guard_t)];
    _Atomic uint64_t head;              /* consumer writes, producer reads */
    uint64_t tail_cache;                /* consumer-private copy of tail */
    fc_guard_t cguard;                  /* optional: consumer-end busy flag */
    char pad2[FC_CACHELINE - 2 * sizeof(uint64_t) - sizeof(fc_guard_t)];
} fc_spsc_t;

static inline int fc_spsc_init(fc_spsc_t *r, size_t cap) {
    uint64_t n;
    if (cap == 0) return -EINVAL;
    n = fc_spsc_pow2(cap);
    r->buf = (void **)calloc(n, sizeof(void *));
    if (!r->buf) return FC_ENOMEM_OWN;
    r->cap = cap; r->mask = n - 1;
    fc_atomic_init(&r->tail, 0);
    fc_atomic_init(&r->head, 0);
    r->head_cache = r->tail_cache = 0;
    fc_guard_init(&r->pguard);
    fc_guard_init(&r->cguard);
    return FC_OK;
}

static inline void fc_spsc_destroy(fc_spsc_t *r) { free(r->buf); r->buf = NULL; }

/* Producer side.  false: full. */
static inline bool fc_spsc_push(fc_spsc_t *r, void *item) {
    uint64_t t = fc_atomic_load_rlx(&r->tail);       /* own counter */
    if (t - r->head_cache >= r->cap) {
        r->head_cache = fc_atomic_load_acq(&r->head); /* pairs: consumer's store_rel(head) */
        if (t - r->head_cache >= r->cap) return false;
    }
    r->buf[t & r->mask] = item;
    fc_atomic_store_rel(&r->tail, t + 1);             /* pairs: consumer's load_acq(tail) */
    return true;
}

/* Consumer side.  false: empty. */
static inline bool fc_spsc_pop(fc_spsc_t *r, void **out) {
    uint64_t h = fc_atomic_load_rlx(&r->head);       /* own counter */
    if (h == r->tail_cache) {
        r->tail_cache = fc_atomic_load_acq(&r->tail); /* pairs: producer's store_rel(tail) */
        if (h == r->tail_cache) return false;
    }
    *out = r->buf[h & r->mask];
    fc_atomic_store_rel(&r->head, h + 1);             /* pairs: producer's load_acq(head) */
    return true;
}

/* Either side, or a third thread: a hint (exact when both ends are quiet).
 * Relaxed: no data is read on the strength of it. */
static inline size_t fc_spsc_size(fc_spsc_t *r) {
    uint64_t h = fc_atomic_load_rlx(&r->head);
    uint64_t t = fc_atomic_load_rlx(&r->tail);
    return t > h ? (size_t)(t - h) : 0;
}

/* ---- bytes ---------------------------------------------------------------- */

/* Same protocol as fc_spsc_t with a byte array: the producer copies bytes in
 * and publishes the new tail; the consumer copies out and publishes head. */
typedef struct {
    unsigned char *buf;
    uint64_t cap, mask;
    char pad0[FC_CACHELINE - 2 * sizeof(uint64_t) - sizeof(void *)];
    _Atomic uint64_t tail;              /* producer writes (release), consumer reads (acquire) */
    fc_guard_t pguard;
    char pad1[FC_CACHELINE - sizeof(uint64_t) - sizeof(fc_guard_t)];
    _Atomic uint64_t head;              /* consumer writes (release), producer reads (acquire) */
    fc_guard_t cguard;
    char pad2[FC_CACHELINE - sizeof(uint64_t) - sizeof(fc_guard_t)];
} fc_bring_t;

static inline int fc_bring_init(fc_bring_t *r, size_t cap) {
    uint64_t n;
    if (cap == 0) return -EINVAL;
    n = fc_spsc_pow2(cap);
    r->buf = (unsigned char *)malloc(n);
    if (!r->buf) return FC_ENOMEM_OWN;
    r->cap = cap; r->mask = n - 1;
    fc_atomic_init(&r->tail, 0);
    fc_atomic_init(&r->head, 0);
    fc_guard_init(&r->pguard);
    fc_guard_init(&r->cguard);
    return FC_OK;
}

static inline void fc_bring_destroy(fc_bring_t *r) { free(r->buf); r->buf = NULL; }

/* Producer: copies up to n bytes in; returns how many fit (0 when full). */
static inline size_t fc_bring_write(fc_bring_t *r, const void *src, size_t n) {
    uint64_t t = fc_atomic_load_rlx(&r->tail);
    uint64_t h = fc_atomic_load_acq(&r->head);       /* pairs: consumer's store_rel(head) */
    uint64_t room = r->cap - (t - h), off, first;
    if (n > room) n = (size_t)room;
    if (n == 0) return 0;
    off = t & r->mask;
    first = r->mask + 1 - off;
    if (first > n) first = n;
    memcpy(r->buf + off, src, first);
    memcpy(r->buf, (const unsigned char *)src + first, n - first);
    fc_atomic_store_rel(&r->tail, t + n);            /* pairs: consumer's load_acq(tail) */
    return n;
}

/* Consumer: copies up to n bytes out; returns how many (0 when empty). */
static inline size_t fc_bring_read(fc_bring_t *r, void *dst, size_t n) {
    uint64_t h = fc_atomic_load_rlx(&r->head);
    uint64_t t = fc_atomic_load_acq(&r->tail);       /* pairs: producer's store_rel(tail) */
    uint64_t avail = t - h, off, first;
    if (n > avail) n = (size_t)avail;
    if (n == 0) return 0;
    off = h & r->mask;
    first = r->mask + 1 - off;
    if (first > n) first = n;
    memcpy(dst, r->buf + off, first);
    memcpy((unsigned char *)dst + first, r->buf, n - first);
    fc_atomic_store_rel(&r->head, h + n);            /* pairs: producer's load_acq(head) */
    return n;
}

static inline size_t fc_bring_size(fc_bring_t *r) {
    uint64_t h = fc_atomic_load_rlx(&r->head);
    uint64_t t = fc_atomic_load_rlx(&r->tail);
    return t > h ? (size_t)(t - h) : 0;
}

#endif
