# What other extension modules (wsconn) call in httpserver without going
# through Python: the Parker a HandlerTask waits at, and current_task().

cdef class Parker:
    cdef object task                # the HandlerTask parked here, or None
    cdef bint yielded
    cdef int wake_c(self) except -1

cdef object aio_current_task(object loop)
