/* lockfree/stack.h — an ABA-safe lock-free LIFO stack of void* (Treiber).
 *
 * Rules.
 *   - Any number of threads may push and pop at once.
 *   - The stack owns nothing: it moves opaque pointers (the Cython side
 *     moves references; the buffer pool moves buffers).
 *   - init/destroy are not thread-safe.  destroy frees the nodes, not what
 *     the items point to: pop everything first if the items need releasing.
 *   - Bounded by `maxsize` items (at most 2^32 - 2): push says "full".
 *
 * Theory of operation.  R. K. Treiber, "Systems Programming: Coping with
 * Parallelism", IBM RJ 5118, 1986: the stack is a linked list whose head is
 * swung by CAS.  Two classic hazards, and how they are met here:
 *
 *   ABA.  A popper reads head = A and A->next = B, is delayed; meanwhile A is
 *   popped, B popped, A pushed back; head is A again and the delayed CAS
 *   A -> B would succeed and install a node (B) that is no longer in the
 *   stack.  Fix: the head is a 64-bit word holding a 32-bit node *index* and
 *   a 32-bit *tag* bumped by every successful CAS (IBM System/370's "counted
 *   pointer", also Michael & Scott 1996 §2).  A delayed CAS fails because the
 *   tag moved.  A false success needs the tag to wrap (2^32 successful
 *   operations on one stack) while one thread sits between its load and its
 *   CAS: accepted, as in every counted-pointer scheme.  We chose index+tag
 *   in one 64-bit word over a 128-bit pointer+counter CAS because gcc 12
 *   routes 16-byte atomics through libatomic (not inlined, not reported
 *   lock-free), while 8-byte CAS is one `lock cmpxchg` everywhere.
 *
 *   Use-after-free.  The delayed popper above reads A->next after A may have
 *   left the stack.  Nodes are therefore never freed while the stack lives:
 *   they live in chunks that only grow, and a popped node goes onto a second
 *   Treiber stack (the free list, same tagged head) for reuse.  Reading a
 *   recycled node's `next` yields a stale index, which the tag check rejects;
 *   `next` is atomic (relaxed) so that this benign race is not a data race.
 *
 * Node storage: chunk k holds FC_STACK_BASE << k nodes, so 27 chunks cover
 * 2^32 indices and a chunk, once published, never moves.  A push that finds
 * the free list empty claims a fresh index with fetch_add on `hwm` and, when
 * the index opens a new chunk, allocates it and publishes it with a CAS on
 * the chunk slot (a racing loser frees its copy): growth is lock-free too.
 *
 * Atomic fields (each release names its acquire):
 *   top, free: 64-bit (tag << 32 | index + 1; index + 1 == 0 means empty).
 *       Written by pushers and poppers with CAS(acq_rel); read with acquire.
 *       A push's release publishes the node's value and next; it pairs with
 *       the acquire load/CAS of the popper that takes the node.  Every write
 *       of a head is an RMW, so later pops extend the push's release sequence
 *       (C11 5.1.2.4): a popper that reads a head installed by another pop
 *       still synchronizes with the push that wrote the node it takes.
 *   node.next: written (relaxed) by the pusher before its release CAS, read
 *       (relaxed) by poppers after their acquire load of the head; relaxed
 *       because the head's acquire/release orders it, and a stale read is
 *       caught by the tag.
 *   node.value: plain; written only by the thread that owns the node (took
 *       it from the free list, not yet published), read only by the popper
 *       whose CAS won it.
 *   chunks[k]: written once (CAS null -> chunk, acq_rel); read with acquire,
 *       pairing with that CAS, so the chunk's zeroed nodes are visible.
 *   hwm: fetch_add(relaxed): hands out fresh indices; carries no data.
 *   count: fetch_add/sub(relaxed): a size hint only.
 */
#ifndef FC_LOCKFREE_STACK_H
#define FC_LOCKFREE_STACK_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../fc/atomic.h"

#define FC_STACK_BASE 64                  /* nodes in chunk 0 */
#define FC_STACK_CHUNKS 27                /* 64 * (2^27 - 1) >= 2^32 */
#define FC_STACK_MAX 0xFFFFFFFEu          /* index + 1 must fit in 32 bits */
#define FC_STACK_FULL 1                   /* fc_stack_push: no room (not an error) */

typedef struct {
    _Atomic uint32_t next;                /* index + 1 of the node below; 0: none */
    void *value;
} fc_stack_node_t;

typedef struct {
    _Atomic uint64_t top;
    char pad0[FC_CACHELINE - sizeof(uint64_t)];
    _Atomic uint64_t free;
    char pad1[FC_CACHELINE - sizeof(uint64_t)];
    _Atomic uint64_t hwm;                 /* fresh indices handed out so far */
    _Atomic int64_t count;                /* items, as a hint */
    uint64_t maxsize;                     /* immutable after init */
    _Atomic(fc_stack_node_t *) chunks[FC_STACK_CHUNKS];
} fc_stack_t;

/* maxsize 0 means FC_STACK_MAX.  0, -EINVAL (maxsize too large). */
int  fc_stack_init(fc_stack_t *s, size_t maxsize);
void fc_stack_destroy(fc_stack_t *s);
/* FC_OK, FC_STACK_FULL, or FC_ENOMEM_OWN (a new chunk could not be allocated). */
int  fc_stack_push(fc_stack_t *s, void *item);
/* true: *out holds the most recently pushed item still in.  false: empty. */
bool fc_stack_pop(fc_stack_t *s, void **out);
size_t fc_stack_size(fc_stack_t *s);

#endif
