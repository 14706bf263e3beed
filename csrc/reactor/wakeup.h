/* reactor/wakeup.h — cross-thread wake-up of a loop blocked in wait(), and
 * the hand-off queue behind call_soon_threadsafe().
 *
 * Theory of operation.  Producers (any thread) push an item under a mutex,
 * then raise `signaled` with an atomic exchange; only the producer that flips
 * it from 0 to 1 writes the eventfd (or pipe), so a burst of N calls costs one
 * write() instead of N.  The loop, when the fd turns readable (or whenever
 * fc_wakeup_pending() says items wait), calls fc_wakeup_drain(), which
 *   1. reads the fd empty,
 *   2. stores signaled = 0,
 *   3. takes every queued item.
 * Step 2 precedes step 3, so an item pushed after step 3's take finds
 * signaled == 0 and writes again; an item pushed before step 2 is taken by
 * step 3.  No item is left behind with the loop asleep.  Both the exchange
 * and the store are seq_cst: the argument above needs a single order between
 * a producer's "push, exchange" and the loop's "store, take" (the mutex
 * orders the push and the take; seq_cst orders the flag against them).
 *
 * fc_wakeup_signal() alone (no item) is async-signal-safe: an atomic
 * exchange and write(2).
 *
 * Ownership: items are opaque pointers; the queue owns nothing.  The Cython
 * side passes an owned reference in and takes it back out.
 */
#ifndef FC_WAKEUP_H
#define FC_WAKEUP_H
#include <pthread.h>
#include <stddef.h>
#include "../fc/atomic.h"

typedef struct {
    int rfd, wfd;                   /* eventfd: rfd == wfd */
    _Atomic int signaled;           /* written by producers (xchg) and loop (store) */
    _Atomic size_t count;           /* queued items; written under mu, read relaxed as a hint */
    pthread_mutex_t mu;             /* guards items/len/cap */
    void **items;
    size_t len, cap;
} fc_wakeup_t;

int  fc_wakeup_init(fc_wakeup_t *w);
void fc_wakeup_close(fc_wakeup_t *w);
/* Any thread.  Returns 0 or a negative status (nothing queued then). */
int  fc_wakeup_push(fc_wakeup_t *w, void *item);
/* Any thread, async-signal-safe. */
void fc_wakeup_signal(fc_wakeup_t *w);
/* Loop thread.  Swaps the queued items into *out (caller frees with free()),
 * returns their number.  *out is NULL when 0. */
size_t fc_wakeup_drain(fc_wakeup_t *w, void ***out);
/* Loop thread: a cheap hint that items wait (relaxed load). */
static inline size_t fc_wakeup_pending(fc_wakeup_t *w) { return fc_atomic_load_rlx(&w->count); }

#endif
