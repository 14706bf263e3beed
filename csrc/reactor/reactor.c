/* reactor/reactor.c — the table of compiled-in backends, best first. */
#include <string.h>
#include <stddef.h>
#include "reactor.h"

#ifdef __linux__
extern const fc_reactor_ops_t fc_reactor_epoll;
#endif
extern const fc_reactor_ops_t fc_reactor_poll;

static const fc_reactor_ops_t *const backends[] = {
#ifdef __linux__
    &fc_reactor_epoll,
#endif
    &fc_reactor_poll,
    NULL,
};

const fc_reactor_ops_t *fc_reactor_find(const char *name) {
    size_t i;
    if (name == NULL || name[0] == '\0') return backends[0];
    for (i = 0; backends[i]; i++)
        if (strcmp(backends[i]->name, name) == 0) return backends[i];
    return NULL;
}

const char *fc_reactor_available(void) {
    /* Built once from backends[] (the one list).  Callers hold the GIL
     * (loop creation, available_backends()), so there is no race. */
    static char names[128];
    size_t i, n = 0;
    if (names[0]) return names;
    for (i = 0; backends[i]; i++) {
        size_t len = strlen(backends[i]->name);
        if (n + len + 2 > sizeof(names)) break;
        if (n) names[n++] = ',';
        memcpy(names + n, backends[i]->name, len);
        n += len;
    }
    names[n] = '\0';
    return names;
}
