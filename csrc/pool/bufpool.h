/* pool/bufpool.h — a pool of byte buffers by power-of-two size class.
 *
 * Rules.
 *   - Thread-safe: any thread may acquire and release, and a buffer may be
 *     released by another thread than the one that acquired it (a read
 *     buffer handed to an executor worker, say).  Each class is a lock-free
 *     stack (lockfree/stack.h), so acquire/release never take a lock and, in
 *     steady state, never call malloc: that is the point of the pool.
 *   - Size classes are 2^8 (256 B) .. 2^20 (1 MiB).  A request above 1 MiB is
 *     served by malloc and freed on release (not pooled): such reads are rare
 *     and pinning that much memory per class would cost more than it saves.
 *   - Each class caches at most `max_cached_bytes / class_size` free buffers
 *     (at least FC_BUFPOOL_MIN_CACHED); a release beyond that frees the buffer.
 *   - Buffers are 64-byte aligned (cache line; also what SIMD parsers like).
 *   - Lifetime: fc_bufpool_destroy may be called with buffers still out; the
 *     pool then lives on until the last of them is released (a reference
 *     count: one for the owner, one per outstanding buffer), so a transport
 *     that outlives its loop by a few callbacks does not touch freed memory.
 *
 * Layout of a buffer: a 64-byte header (magic, class, capacity, owning pool)
 * right before the data pointer handed out.  fc_bufpool_release checks the
 * magic, which catches double releases and foreign pointers in debug builds
 * (assert) and returns -EINVAL in release builds.
 *
 * Atomic fields:
 *   refs: fetch_add(relaxed) per acquire (the caller already holds a
 *       reference, so nothing can free the pool meanwhile); fetch_sub(acq_rel)
 *       per release and in destroy: the release half orders this thread's use
 *       of the pool before the free; the acquire half, in the thread that sees
 *       the count reach 0, pairs with every other thread's release so the
 *       free happens after all their uses (the usual refcount argument, e.g.
 *       Boost.Atomic's usage example).
 *   closed: store(release) in destroy, load(acquire) in release: a buffer
 *       released after destroy is freed rather than cached.  A release that
 *       raced destroy and cached anyway is drained by the final free.
 *   hits/misses/…: fetch_add(relaxed): statistics only.
 */
#ifndef FC_POOL_BUFPOOL_H
#define FC_POOL_BUFPOOL_H
#include <stddef.h>
#include <stdint.h>
#include "../lockfree/stack.h"

#define FC_BUFPOOL_MIN_SHIFT 8          /* 256 B: smaller reads share this class */
#define FC_BUFPOOL_MAX_SHIFT 20         /* 1 MiB: larger ones are not pooled */
#define FC_BUFPOOL_NCLASSES (FC_BUFPOOL_MAX_SHIFT - FC_BUFPOOL_MIN_SHIFT + 1)
#define FC_BUFPOOL_MIN_CACHED 4         /* even the 1 MiB class keeps a few */
#define FC_BUFPOOL_HEADER 64            /* keeps the data 64-byte aligned */

typedef struct fc_bufpool fc_bufpool_t;

typedef struct {
    uint64_t hits;          /* acquires served from a cache */
    uint64_t misses;        /* acquires that called malloc */
    uint64_t frees;         /* releases that called free (cache full or oversize) */
    uint64_t outstanding;   /* buffers acquired and not yet released */
    uint64_t cached;        /* free buffers held by the pool */
    uint64_t cached_bytes;
} fc_bufpool_stats_t;

/* max_cached_bytes: per class (0 means 4 MiB).  0 or FC_ENOMEM_OWN. */
int   fc_bufpool_create(fc_bufpool_t **out, size_t max_cached_bytes);
/* Drops the owner's reference: frees the cached buffers now and the pool
 * once every outstanding buffer is released. */
void  fc_bufpool_destroy(fc_bufpool_t *p);
/* A buffer of at least `size` bytes (capacity via *cap if not NULL), or NULL
 * on allocation failure.  size 0 is allowed (gets the smallest class). */
void *fc_bufpool_acquire(fc_bufpool_t *p, size_t size, size_t *cap);
/* Gives a buffer back (to the pool it came from).  0, or -EINVAL when `buf`
 * is not a live pool buffer. */
int   fc_bufpool_release(void *buf);
/* Capacity of a pool buffer (its class size, or the exact oversize size). */
size_t fc_bufpool_capacity(const void *buf);
void  fc_bufpool_stats(fc_bufpool_t *p, fc_bufpool_stats_t *out);

#endif
