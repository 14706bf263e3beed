/* reactor/reactor.h — one interface for every I/O readiness backend.
 *
 * Theory of operation: the loop keeps, per file descriptor, the interest it
 * wants (FC_EV_READ | FC_EV_WRITE).  Whenever that interest changes it calls
 * ops->set(r, fd, old, new): old == 0 means "start watching", new == 0 means
 * "stop watching", anything else is a modification.  ops->wait() fills at
 * most `max` events and returns how many it filled, 0 on timeout or EINTR
 * (the caller then runs Python's signal handlers), or -errno.
 *
 * Rules:
 *  - Level-triggered semantics: an fd stays reported while it is ready and
 *    watched.  That is what add_reader() callers expect (they may read less
 *    than what is buffered).  An edge- or completion-based backend (io_uring
 *    POLL_ADD multishot, kqueue EV_CLEAR) must re-arm to keep this promise.
 *  - Errors and hang-ups are reported as both READ and WRITE (masked by the
 *    loop with what is watched), so whoever waits on the fd wakes and sees
 *    the error from recv()/send(), as the stdlib selectors module does.
 *  - The reactor never owns the fds and never closes them.
 *  - One thread at a time: the loop's thread.  Only the wakeup object
 *    (wakeup.h) may be touched from other threads.
 *
 * Adding a backend (io_uring, kqueue): one new file that defines a
 * `const fc_reactor_ops_t fc_reactor_<name>` and one line in reactor.c.
 * The loop does not change.
 */
#ifndef FC_REACTOR_H
#define FC_REACTOR_H
#include <stdint.h>

#define FC_EV_READ  1u
#define FC_EV_WRITE 2u

typedef struct fc_reactor fc_reactor_t;   /* opaque, defined per backend */

typedef struct {
    int fd;
    uint32_t events;                      /* FC_EV_READ | FC_EV_WRITE */
} fc_event_t;

typedef struct fc_reactor_ops {
    const char *name;
    int  (*create)(fc_reactor_t **out);
    void (*destroy)(fc_reactor_t *r);
    int  (*set)(fc_reactor_t *r, int fd, uint32_t old_ev, uint32_t new_ev);
    /* timeout_ms < 0: wait forever; 0: poll. */
    int  (*wait)(fc_reactor_t *r, fc_event_t *out, int max, int timeout_ms);
} fc_reactor_ops_t;

/* Backend lookup: name NULL or "" picks the best one available; returns NULL
 * for an unknown or unavailable name. */
const fc_reactor_ops_t *fc_reactor_find(const char *name);
/* Comma-separated names of the backends compiled in, best first. */
const char *fc_reactor_available(void);

#endif
