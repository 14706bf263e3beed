/* fc/atomic.h — the only place atomics appear.
 *
 * Every atomic operation in csrc/ goes through these macros, so a checker
 * (TSan, a model checker) can be swapped in here.  C11 <stdatomic.h> only.
 */
#ifndef FC_ATOMIC_H
#define FC_ATOMIC_H
#include <stdatomic.h>

#define fc_atomic_load_acq(p)       atomic_load_explicit((p), memory_order_acquire)
#define fc_atomic_load_rlx(p)       atomic_load_explicit((p), memory_order_relaxed)
#define fc_atomic_store_rel(p, v)   atomic_store_explicit((p), (v), memory_order_release)
#define fc_atomic_store_rlx(p, v)   atomic_store_explicit((p), (v), memory_order_relaxed)
#define fc_atomic_xchg_sc(p, v)     atomic_exchange_explicit((p), (v), memory_order_seq_cst)
#define fc_atomic_store_sc(p, v)    atomic_store_explicit((p), (v), memory_order_seq_cst)
#define fc_atomic_fetch_add_rlx(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)

#endif
