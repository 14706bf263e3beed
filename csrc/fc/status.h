/* fc/status.h — status codes shared by every C module.
 *
 * Rules: C functions in csrc/ return 0 (FC_OK) or a negative status; where an
 * OS call failed the status is -errno, so the Python side can raise the exact
 * OSError subclass.  Codes below -4096 are FlowCoro's own (errno values are
 * all smaller than 4096 on every platform we build for).  Translation into
 * Python exceptions happens in exactly one place: flowcoro/_core/errors.pxi.
 */
#ifndef FC_STATUS_H
#define FC_STATUS_H

#define FC_OK 0
#define FC_ENOMEM_OWN (-4097)   /* allocation failed in FlowCoro's own code */

#endif
