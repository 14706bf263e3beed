/* reactor/epoll.c — Linux epoll backend (level-triggered).
 *
 * Why level-triggered and not EPOLLET/EPOLLONESHOT: the loop's contract for
 * add_reader() is level-triggered (a callback that reads part of the buffer
 * is called again), and the transports re-check readiness themselves, so a
 * one-shot re-arm (one extra epoll_ctl per wake-up) would only cost syscalls.
 *
 * fds closed behind our back: the kernel drops an fd from the interest list
 * when its last reference closes, so our view of "registered" can be stale.
 * set() therefore retries MOD as ADD on ENOENT and ADD as MOD on EEXIST, and
 * treats ENOENT/EBADF on DEL as done.
 */
#ifdef __linux__
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/epoll.h>
#include "reactor.h"
#include "../fc/status.h"

struct fc_reactor {
    int epfd;
    int cap;                        /* size of evs */
    struct epoll_event *evs;
};

static int ep_create(fc_reactor_t **out) {
    fc_reactor_t *r = (fc_reactor_t *)calloc(1, sizeof(*r));
    if (!r) return FC_ENOMEM_OWN;
    r->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (r->epfd < 0) { int e = errno; free(r); return -e; }
    r->cap = 0; r->evs = NULL;
    *out = r;
    return FC_OK;
}

static void ep_destroy(fc_reactor_t *r) {
    if (!r) return;
    close(r->epfd);
    free(r->evs);
    free(r);
}

static uint32_t to_epoll(uint32_t ev) {
    uint32_t e = 0;
    if (ev & FC_EV_READ) e |= EPOLLIN;
    if (ev & FC_EV_WRITE) e |= EPOLLOUT;
    return e;
}

static int ep_set(fc_reactor_t *r, int fd, uint32_t old_ev, uint32_t new_ev) {
    struct epoll_event ev;
    int op, rc;
    ev.events = to_epoll(new_ev);
    ev.data.u64 = 0;
    ev.data.fd = fd;
    if (new_ev == 0) {
        rc = epoll_ctl(r->epfd, EPOLL_CTL_DEL, fd, &ev);
        if (rc < 0 && errno != ENOENT && errno != EBADF) return -errno;
        return FC_OK;
    }
    op = old_ev ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    rc = epoll_ctl(r->epfd, op, fd, &ev);
    if (rc < 0 && op == EPOLL_CTL_MOD && errno == ENOENT)
        rc = epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev);
    else if (rc < 0 && op == EPOLL_CTL_ADD && errno == EEXIST)
        rc = epoll_ctl(r->epfd, EPOLL_CTL_MOD, fd, &ev);
    return rc < 0 ? -errno : FC_OK;
}

static int ep_wait(fc_reactor_t *r, fc_event_t *out, int max, int timeout_ms) {
    int n, i;
    if (r->cap < max) {
        struct epoll_event *nb = (struct epoll_event *)realloc(r->evs, (size_t)max * sizeof(*nb));
        if (!nb) return FC_ENOMEM_OWN;
        r->evs = nb; r->cap = max;
    }
    n = epoll_wait(r->epfd, r->evs, max, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    for (i = 0; i < n; i++) {
        uint32_t e = r->evs[i].events, o = 0;
        /* As selectors.EpollSelector: anything but pure EPOLLOUT wakes a
         * reader, anything but pure EPOLLIN wakes a writer (ERR, HUP). */
        if (e & ~(uint32_t)EPOLLOUT) o |= FC_EV_READ;
        if (e & ~(uint32_t)EPOLLIN) o |= FC_EV_WRITE;
        out[i].fd = r->evs[i].data.fd;
        out[i].events = o;
    }
    return n;
}

const fc_reactor_ops_t fc_reactor_epoll = {"epoll", ep_create, ep_destroy, ep_set, ep_wait};
#endif
