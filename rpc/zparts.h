/*
 * rpc/zparts.h - private to rpc/: one whole multipart message off a
 * socket, without blocking, keeping its first frames in a bounded array.
 */
#ifndef PC_RPC_ZPARTS_H
#define PC_RPC_ZPARTS_H

#include <zmq.h>

/* Receive every frame of the next message on sock (ZMQ_DONTWAIT): the
 * first max go to part[] (the caller closes them), the rest are closed
 * here, so that the next call starts on a message boundary.  Returns how
 * many were kept: 0 when nothing was waiting. */
static inline int pc_rpc_recv_parts(void *sock, zmq_msg_t *part, int max)
{
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < max)
            part[n++] = m;
        else
            zmq_msg_close(&m);
    }
    return n;
}

#endif /* PC_RPC_ZPARTS_H */
