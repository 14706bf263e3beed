/* lockfree/mpmc.h — bounded multi-producer multi-consumer queue of void*.
 *
 * Rules.
 *   - Any number of threads may call fc_mpmc_push and fc_mpmc_pop at once.
 *   - The queue owns nothing: it moves opaque pointers.  The Cython side
 *     pushes an owned reference and takes it back out on pop.
 *   - init/destroy are not thread-safe (the owner calls them alone).
 *   - Never blocks and never allocates after init.  Waiting for room or for
 *     an item is the caller's business (lockfree/park.h).
 *
 * Theory of operation (D. Vyukov, "Bounded MPMC queue", 1024cores.net, 2010).
 * The queue is an array of `cap` cells, each holding a payload and a
 * sequence number `seq`.  Two counters, `enq` and `deq`, only grow (64 bits:
 * they do not wrap in the life of a process).  Position p maps to cell
 * p mod cap, and cell c's seq says whose turn it is:
 *
 *     seq == p          the cell is free for the producer of position p
 *     seq == p + 1      the cell holds the item of position p, for its consumer
 *     seq == p + cap    the consumer of p emptied it; free for producer p + cap
 *
 * A producer reads enq = p and the cell's seq: if seq == p it claims p by
 * CAS enq p -> p+1, writes the payload and publishes with store(seq, p+1);
 * if seq < p the cell still holds the item from one lap ago: the queue is
 * full; if seq > p another producer claimed p first: reread enq and retry.
 * Consumers mirror this with deq, seq == p + 1, and store(seq, p + cap).
 * Claiming a position (the CAS) and filling it (the seq store) are separate
 * steps, so the queue is not strictly lock-free: a producer descheduled
 * between them holds back consumers of that one cell (Vyukov's caveat).
 *
 * `cap` need not be a power of two: the cell index is p & mask when it is,
 * else p % cap (a division, ~25 cycles, paid only by odd capacities).
 * The scheme needs at least two cells: with one, "holds the item of p"
 * (seq == p + 1) and "free for the producer of p + 1" (seq == p + cap) are
 * the same value.  A queue of bound 1 therefore gets two cells, and push
 * also checks enq - deq < bound (only when bound < cells, i.e. bound 1).
 *
 * Invariant: deq <= enq <= deq + bound (as observed between operations).
 */
#ifndef FC_LOCKFREE_MPMC_H
#define FC_LOCKFREE_MPMC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../fc/atomic.h"

typedef struct {
    /* Written by the producer of its position (release, seq = p + 1) and the
     * consumer (release, seq = p + cap); read by both with acquire.  Each
     * release pairs with the acquire load of the next party's turn check,
     * which makes the payload written before it visible. */
    _Atomic uint64_t seq;
    void *data;     /* plain: only the party whose turn `seq` says touches it */
} fc_mpmc_cell_t;

typedef struct {
    fc_mpmc_cell_t *cells;
    uint64_t cap;       /* cells; immutable after init */
    uint64_t mask;      /* cap - 1 when cap is a power of two, else 0 */
    uint64_t bound;     /* the caller's capacity: cap, or 1 when cap is 2 */
    char pad0[FC_CACHELINE - 3 * sizeof(uint64_t) - sizeof(void *)];
    /* Written (CAS, relaxed) by producers; read (relaxed) by producers and,
     * as a size hint, by anyone.  Relaxed is enough: the CAS only hands out
     * positions; the payload is ordered by the cell's seq. */
    _Atomic uint64_t enq;
    char pad1[FC_CACHELINE - sizeof(uint64_t)];
    /* Written (CAS, relaxed) by consumers; read by consumers and as a hint. */
    _Atomic uint64_t deq;
    char pad2[FC_CACHELINE - sizeof(uint64_t)];
} fc_mpmc_t;

/* 0, or FC_ENOMEM_OWN; cap >= 1 (the caller checks; cap 0 gives -EINVAL). */
int  fc_mpmc_init(fc_mpmc_t *q, size_t cap);
void fc_mpmc_destroy(fc_mpmc_t *q);
/* true: the item is in.  false: the queue was full at some instant. */
bool fc_mpmc_push(fc_mpmc_t *q, void *item);
/* true: *out holds an item.  false: the queue was empty at some instant. */
bool fc_mpmc_pop(fc_mpmc_t *q, void **out);
/* Items in the queue, approximately (exact when no call is in flight). */
size_t fc_mpmc_size(fc_mpmc_t *q);
static inline size_t fc_mpmc_capacity(const fc_mpmc_t *q) { return (size_t)q->bound; }

#endif
