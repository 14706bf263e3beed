/* lockfree/deque.h — Chase-Lev work-stealing deque of void*.
 *
 * Rules.
 *   - One owner thread calls fc_deque_push and fc_deque_take (LIFO end,
 *     "bottom"); any thread, the owner included, calls fc_deque_steal (FIFO
 *     end, "top").  The Cython side checks the owner's thread id.
 *   - Unbounded: push grows the array (owner only); old arrays stay allocated
 *     until destroy, because a thief may still be reading one (Lê et al. leave
 *     reclamation to a GC; keeping them costs at most the final array's size
 *     again, as sizes double).
 *   - The deque owns nothing (opaque pointers).  init/destroy not thread-safe.
 *
 * Theory of operation.  D. Chase and Y. Lev, "Dynamic Circular Work-Stealing
 * Deque", SPAA 2005; memory orderings from N. M. Lê, A. Pop, A. Cohen and
 * F. Zappa Nardelli, "Correct and Efficient Work-Stealing for Weak Memory
 * Models", PPoPP 2013, Figure 1 (C11), which they proved correct.  `top` and
 * `bottom` are indices that only grow (top) or move by one (bottom); the
 * items are buffer[top .. bottom-1] (mod size).  The owner pushes and takes at
 * bottom without CAS; thieves claim buffer[top] with CAS on top.  The one
 * contended case, a take racing steals for the last item, is settled by the
 * same CAS on top.
 *
 * Atomic fields (each release names its acquire; fences are the paper's):
 *   bottom: written by the owner only.  push: fence(release) then
 *       store(relaxed) — the fence publishes the slot written just before; it
 *       pairs with the thief's load(acquire) of bottom in steal.  (Under TSan,
 *       which does not model fences, a store(release) instead: see
 *       fc_atomic_store_fenced_rel.)  take: store(relaxed) then fence(seq_cst)
 *       then load top: the seq_cst fence pairs with the seq_cst fence in steal
 *       so that owner and thief cannot both miss each other's claim on the
 *       last item (a store-load, Dekker-style order no acquire/release gives).
 *   top: written by CAS(seq_cst) in steal and in take (last item); read with
 *       acquire in push (pairs with the thief's CAS: its read of the slot
 *       happens before we overwrite that slot) and in steal, relaxed in take
 *       (after the seq_cst fence).
 *   array: written by the owner when growing — store(release) (the paper
 *       uses relaxed plus push's release fence; release is equal on x86 and
 *       keeps TSan informed); read by thieves with acquire (the paper's
 *       consume), which pairs with it so the new array's contents are visible.
 *   buffer slots: atomic, relaxed: a thief may read a slot the owner is
 *       rewriting after a wrap; its CAS on top then fails and the value is
 *       dropped, so the read must not be a data race, but needs no ordering.
 */
#ifndef FC_LOCKFREE_DEQUE_H
#define FC_LOCKFREE_DEQUE_H
#include <stdint.h>
#include "../fc/atomic.h"

#define FC_DEQUE_EMPTY 1        /* nothing to take/steal (not an error) */
#define FC_DEQUE_ABORT 2        /* steal lost a race; the deque may not be empty */

typedef struct fc_deque_array {
    int64_t size;                           /* power of two; immutable */
    struct fc_deque_array *prev;            /* older array, kept for late thieves */
    _Atomic(void *) buf[];
} fc_deque_array_t;

typedef struct {
    _Atomic int64_t top;
    char pad0[FC_CACHELINE - sizeof(int64_t)];
    _Atomic int64_t bottom;
    _Atomic(fc_deque_array_t *) array;
    char pad1[FC_CACHELINE - sizeof(int64_t) - sizeof(void *)];
} fc_deque_t;

/* cap: initial slots (rounded up to a power of two, at least 16). */
int  fc_deque_init(fc_deque_t *q, size_t cap);
void fc_deque_destroy(fc_deque_t *q);
/* Owner only.  FC_OK or FC_ENOMEM_OWN (growing failed; the item is not in). */
int  fc_deque_push(fc_deque_t *q, void *item);
/* Owner only.  FC_OK (*out set) or FC_DEQUE_EMPTY.  Newest first. */
int  fc_deque_take(fc_deque_t *q, void **out);
/* Any thread.  FC_OK (*out set), FC_DEQUE_EMPTY or FC_DEQUE_ABORT.  Oldest first. */
int  fc_deque_steal(fc_deque_t *q, void **out);
/* Any thread: a hint. */
size_t fc_deque_size(fc_deque_t *q);

#endif
