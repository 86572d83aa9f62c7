/* The runner's control protocol: one command per line on a stream socket, one reply line each
 * ("ok [values]" or "error MESSAGE"). dpdk_target/runner_control.py is the other side. */
#ifndef P4TAS_SWX_CONTROL_H
#define P4TAS_SWX_CONTROL_H

#include <rte_swx_pipeline.h>

struct control;

struct control *control_create(struct rte_swx_pipeline *p, int fd);
int control_fd(const struct control *ctl);
/* True if a command may be waiting (poll() with zero timeout). */
int control_pending(const struct control *ctl);
/* Read what arrived and serve every complete command; -1 when the peer closed the socket. */
int control_serve(struct control *ctl);

#endif
