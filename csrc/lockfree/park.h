/* lockfree/park.h — an event count: lets threads sleep until "something
 * changed" without a lock on the fast path of the notifier.
 *
 * Rules.
 *   - A waiter calls, in this order:
 *         key = fc_park_prepare(p);
 *         <recheck its condition (e.g. try to pop) — if true: fc_park_done(p)>
 *         fc_park_wait(p, key, timeout_ns, spin_ns);
 *         fc_park_done(p);
 *     and loops.  A notifier makes its change (e.g. pushes) and then calls
 *     fc_park_notify(p, n).  With that order no wake-up is lost: see below.
 *   - Wakes are hints: a woken waiter rechecks its condition.
 *   - The struct is plain memory; fc_park_init before use, no destroy needed.
 *   - Blocking is a Linux futex on `epoch` (a mutex + condition variable
 *     elsewhere); spinning first (spin_ns) is optional.
 *
 * Theory of operation: D. Vyukov's "eventcount" (1024cores.net, 2011), the
 * waiting half of a condition variable without the mutex.  `epoch` changes on
 * each notify that finds a prepared waiter; a waiter that read epoch == key
 * before rechecking sleeps only while epoch is still key, so a notify that
 * lands anywhere after prepare makes the wait return at once.
 *
 * Why no lost wake-up (the Dekker argument).  Waiter: waiters++ (seq_cst
 * RMW), fence(seq_cst), then rechecks the container.  Notifier: its change to
 * the container, fence(seq_cst), then reads waiters.  The two seq_cst fences
 * are ordered one way or the other in the single total order S: if the
 * notifier's fence comes first, the waiter's recheck sees the change; else
 * the notifier sees waiters > 0 and bumps epoch.  The same argument, with
 * `sleepers` and the kernel's atomic compare inside FUTEX_WAIT, lets the
 * notifier skip the futex_wake syscall when nobody is asleep (waiters that
 * only spin see the epoch move).
 *
 * Atomic fields:
 *   epoch: written by notifiers (fetch_add, seq_cst); read by waiters
 *       (seq_cst in prepare, acquire while spinning, and by the kernel).  It is
 *       a counter that carries no data; wrap-around (2^32 notifies while one
 *       waiter sits between prepare and wait) is the accepted ABA window.
 *   waiters: prepared sync waiters; fetch_add/sub(seq_cst) by waiters, read
 *       (relaxed, after the notifier's seq_cst fence) by notifiers.
 *   sleepers: waiters inside (or entering) the blocking call; fetch_add/sub
 *       (seq_cst) by waiters; read (seq_cst) by notifiers after the epoch bump.
 *   async_waiters: count kept for the Python side (coroutines waiting through
 *       an event loop rather than a thread).  Incremented (seq_cst + fence)
 *       before the coroutine rechecks, read by fc_park_notify after its fence:
 *       the same Dekker pairing tells the notifier to take the slow path.
 */
#ifndef FC_LOCKFREE_PARK_H
#define FC_LOCKFREE_PARK_H
#include <stdint.h>
#include "../fc/atomic.h"
#ifndef __linux__
#include <pthread.h>
#endif

typedef struct {
    _Atomic uint32_t epoch;
    _Atomic uint32_t waiters;
    _Atomic uint32_t sleepers;
    _Atomic uint32_t async_waiters;
#ifndef __linux__
    pthread_mutex_t mu;         /* fallback only: guards the condition wait */
    pthread_cond_t cv;
#endif
} fc_park_t;

#define FC_PARK_WOKEN 0
#define FC_PARK_TIMEOUT 1
#define FC_PARK_INTR 2      /* a signal interrupted the sleep (Python checks its handlers) */

void fc_park_init(fc_park_t *p);
void fc_park_fini(fc_park_t *p);    /* no-op on Linux */
/* Registers a waiter; returns the epoch to pass to fc_park_wait. */
uint32_t fc_park_prepare(fc_park_t *p);
/* Unregisters a waiter (after a wait, or instead of one). */
void fc_park_done(fc_park_t *p);
/* Sleeps while epoch == key: FC_PARK_WOKEN (epoch moved, or a spurious wake),
 * FC_PARK_TIMEOUT, or FC_PARK_INTR (a signal handler ran: CPython's handlers
 * are installed without SA_RESTART, and its main thread must get a chance
 * to run the Python-level handler, e.g. raise KeyboardInterrupt).  timeout_ns < 0: no timeout.  Spins spin_ns first. */
int fc_park_wait(fc_park_t *p, uint32_t key, int64_t timeout_ns, int64_t spin_ns);
/* Wakes up to n sleepers (n < 0: all) if anyone is prepared.  Returns the
 * async_waiters count seen (nonzero: the caller should wake coroutines). */
uint32_t fc_park_notify(fc_park_t *p, int n);
/* Async waiters (see above): add before rechecking, remove when done. */
void fc_park_async_add(fc_park_t *p);
void fc_park_async_done(fc_park_t *p);
/* Monotonic clock in nanoseconds (for deadlines). */
int64_t fc_park_now_ns(void);

#endif
