/* reactor/poll.c — portable poll(2) backend.
 *
 * Keeps a dense pollfd array plus an fd -> slot index (grown on demand), so
 * set() is O(1) (removal swaps the last slot in) and wait() is O(watched fds).
 * Invariant: for every slot i < n, index[fds[i].fd] == i; index[fd] == -1 for
 * fds not watched.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include "reactor.h"
#include "../fc/status.h"

struct fc_reactor {
    struct pollfd *fds;
    int n, cap;
    int *index;
    int index_cap;
};

static int pl_create(fc_reactor_t **out) {
    fc_reactor_t *r = (fc_reactor_t *)calloc(1, sizeof(*r));
    if (!r) return FC_ENOMEM_OWN;
    *out = r;
    return FC_OK;
}

static void pl_destroy(fc_reactor_t *r) {
    if (!r) return;
    free(r->fds);
    free(r->index);
    free(r);
}

static short to_poll(uint32_t ev) {
    short e = 0;
    if (ev & FC_EV_READ) e |= POLLIN;
    if (ev & FC_EV_WRITE) e |= POLLOUT;
    return e;
}

static int grow_index(fc_reactor_t *r, int fd) {
    int nc = r->index_cap ? r->index_cap : 64, i;
    int *ni;
    while (nc <= fd) nc *= 2;
    ni = (int *)realloc(r->index, (size_t)nc * sizeof(int));
    if (!ni) return FC_ENOMEM_OWN;
    for (i = r->index_cap; i < nc; i++) ni[i] = -1;
    r->index = ni; r->index_cap = nc;
    return FC_OK;
}

static int pl_set(fc_reactor_t *r, int fd, uint32_t old_ev, uint32_t new_ev) {
    int slot;
    (void)old_ev;
    if (fd < 0) return -EBADF;
    if (fd >= r->index_cap && grow_index(r, fd) != FC_OK) return FC_ENOMEM_OWN;
    slot = r->index[fd];
    if (new_ev == 0) {
        if (slot >= 0) {
            int last = r->n - 1;
            r->fds[slot] = r->fds[last];
            r->index[r->fds[slot].fd] = slot;
            r->index[fd] = -1;
            r->n--;
        }
        return FC_OK;
    }
    if (slot < 0) {
        if (r->n == r->cap) {
            int nc = r->cap ? r->cap * 2 : 64;
            struct pollfd *nf = (struct pollfd *)realloc(r->fds, (size_t)nc * sizeof(*nf));
            if (!nf) return FC_ENOMEM_OWN;
            r->fds = nf; r->cap = nc;
        }
        slot = r->n++;
        r->fds[slot].fd = fd;
        r->index[fd] = slot;
    }
    r->fds[slot].events = to_poll(new_ev);
    r->fds[slot].revents = 0;
    return FC_OK;
}

static int pl_wait(fc_reactor_t *r, fc_event_t *out, int max, int timeout_ms) {
    int n, i, k = 0;
    n = poll(r->fds, (nfds_t)r->n, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    for (i = 0; i < r->n && k < max && n > 0; i++) {
        short e = r->fds[i].revents;
        uint32_t o = 0;
        if (!e) continue;
        n--;
        if (e & POLLNVAL) {
            /* Closed behind our back: report it so the owner notices, as
             * selectors.PollSelector would (both directions). */
            o = FC_EV_READ | FC_EV_WRITE;
        } else {
            if (e & ~POLLOUT) o |= FC_EV_READ;
            if (e & ~POLLIN) o |= FC_EV_WRITE;
        }
        out[k].fd = r->fds[i].fd;
        out[k].events = o;
        k++;
    }
    return k;
}

const fc_reactor_ops_t fc_reactor_poll = {"poll", pl_create, pl_destroy, pl_set, pl_wait};
