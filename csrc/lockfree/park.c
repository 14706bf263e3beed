/* lockfree/park.c — event count over a futex; see park.h for the protocol
 * and the argument that no wake-up is lost. */
#include <errno.h>
#include <limits.h>
#include <time.h>
#include "park.h"
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

int64_t fc_park_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void fc_park_init(fc_park_t *p) {
    fc_atomic_init(&p->epoch, 0);
    fc_atomic_init(&p->waiters, 0);
    fc_atomic_init(&p->sleepers, 0);
    fc_atomic_init(&p->async_waiters, 0);
#ifndef __linux__
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
#endif
}

void fc_park_fini(fc_park_t *p) {
#ifndef __linux__
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
#else
    (void)p;
#endif
}

uint32_t fc_park_prepare(fc_park_t *p) {
    fc_atomic_fetch_add_sc(&p->waiters, 1);
    /* seq_cst fence: pairs with the fence in fc_park_notify (Dekker); the
     * caller's recheck comes after it. */
    fc_atomic_fence_sc();
    return fc_atomic_load_sc(&p->epoch);
}

void fc_park_done(fc_park_t *p) {
    /* Relaxed is enough: a notifier that still sees us only does a spare
     * epoch bump. */
    fc_atomic_fetch_sub_rlx(&p->waiters, 1);
}

void fc_park_async_add(fc_park_t *p) {
    fc_atomic_fetch_add_sc(&p->async_waiters, 1);
    fc_atomic_fence_sc();               /* pairs with fc_park_notify's fence */
}

void fc_park_async_done(fc_park_t *p) {
    fc_atomic_fetch_sub_rlx(&p->async_waiters, 1);
}

#ifdef __linux__
static int futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t rel_ns) {
    struct timespec ts, *tsp = NULL;
    if (rel_ns >= 0) {
        ts.tv_sec = rel_ns / 1000000000;
        ts.tv_nsec = rel_ns % 1000000000;
        tsp = &ts;
    }
    /* The kernel reads *addr itself, atomically with queueing us. */
    if (syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, tsp, NULL, 0) == 0)
        return 0;
    return errno;       /* EAGAIN (value moved), EINTR, ETIMEDOUT */
}

static void futex_wake(_Atomic uint32_t *addr, int n) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}
#endif

int fc_park_wait(fc_park_t *p, uint32_t key, int64_t timeout_ns, int64_t spin_ns) {
    int64_t start = (timeout_ns >= 0 || spin_ns > 0) ? fc_park_now_ns() : 0;
    int64_t deadline = timeout_ns >= 0 ? start + timeout_ns : INT64_MAX;
    int rc = FC_PARK_WOKEN;
    if (spin_ns > 0) {
        int64_t spin_end = start + spin_ns;
        unsigned i = 0;
        if (spin_end > deadline) spin_end = deadline;
        /* acquire: pairs with the notifier's epoch bump (the data it guards is
         * ordered by the container's own fields; this only avoids a stale
         * view). */
        while (fc_atomic_load_acq(&p->epoch) == key) {
            fc_cpu_relax();
            if ((++i & 63) == 0 && fc_park_now_ns() >= spin_end) break;
        }
        if (fc_atomic_load_acq(&p->epoch) != key) return FC_PARK_WOKEN;
    }
    fc_atomic_fetch_add_sc(&p->sleepers, 1);
#ifdef __linux__
    for (;;) {
        int64_t rel = -1;
        int e;
        if (fc_atomic_load_sc(&p->epoch) != key) break;
        if (timeout_ns >= 0) {
            rel = deadline - fc_park_now_ns();
            if (rel <= 0) { rc = FC_PARK_TIMEOUT; break; }
        }
        e = futex_wait(&p->epoch, key, rel);
        if (e == ETIMEDOUT) {
            rc = fc_atomic_load_sc(&p->epoch) != key ? FC_PARK_WOKEN : FC_PARK_TIMEOUT;
            break;
        }
        if (e == 0) break;            /* woken (maybe spuriously): caller rechecks */
        if (e == EINTR) { rc = FC_PARK_INTR; break; }
        /* EAGAIN: epoch moved -> the loop sees it */
    }
#else
    pthread_mutex_lock(&p->mu);
    while (fc_atomic_load_sc(&p->epoch) == key) {
        if (timeout_ns >= 0) {
            struct timespec ts;
            int64_t now = fc_park_now_ns();
            if (now >= deadline) { rc = FC_PARK_TIMEOUT; break; }
            clock_gettime(CLOCK_REALTIME, &ts);
            {
                int64_t abs_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + (deadline - now);
                ts.tv_sec = abs_ns / 1000000000;
                ts.tv_nsec = abs_ns % 1000000000;
            }
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
        } else {
            pthread_cond_wait(&p->cv, &p->mu);
        }
    }
    pthread_mutex_unlock(&p->mu);
#endif
    fc_atomic_fetch_sub_sc(&p->sleepers, 1);
    return rc;
}

uint32_t fc_park_notify(fc_park_t *p, int n) {
    /* seq_cst fence: pairs with the fences in fc_park_prepare and
     * fc_park_async_add; the caller's change to the container precedes it. */
    fc_atomic_fence_sc();
    if (fc_atomic_load_rlx(&p->waiters) != 0) {
        fc_atomic_fetch_add_sc(&p->epoch, 1);
        /* seq_cst load after the seq_cst bump: pairs with the waiter's
         * sleepers++ then kernel compare (park.h). */
        if (fc_atomic_load_sc(&p->sleepers) != 0) {
#ifdef __linux__
            futex_wake(&p->epoch, n < 0 ? INT_MAX : n);
#else
            pthread_mutex_lock(&p->mu);
            if (n == 1) pthread_cond_signal(&p->cv); else pthread_cond_broadcast(&p->cv);
            pthread_mutex_unlock(&p->mu);
#endif
        }
    }
    return fc_atomic_load_rlx(&p->async_waiters);
}
