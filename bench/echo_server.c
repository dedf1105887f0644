/*
 * bench/echo_server.c - the baseline of rpc_bench: a raw ZeroMQ server that
 * does everything prefixcached does on the wire and nothing else.
 *
 *   echo_server ENDPOINT        e.g. echo_server ipc:///tmp/x/echo.sock
 *
 * Like the daemon (rpc/rpc.h): one thread, one ROUTER socket bound to
 * ENDPOINT, one zmq_poll() then every ready message drained with DONTWAIT.
 * A request is a multipart message whose LAST frame is the payload; every
 * frame before it (the ROUTER identity, a delimiter, ...) is the envelope and
 * goes back unchanged (moved, not copied) ahead of the reply payload.
 *
 * Payload: [u32 LE reply_len][u32 LE tag][anything].  rpc_bench puts the
 * daemon's msgpack request after the 8-byte header, so the echo server
 * receives the very bytes the daemon would (plus 8), and reply_len is the
 * size of the daemon's reply to that request, measured by rpc_bench against
 * the daemon before the timed phases.  The reply is a fresh message of
 * reply_len bytes holding the first reply_len bytes of the request (zero
 * padded if the request is shorter): the header comes back with it, so the
 * tag identifies the reply.  A payload shorter than 8 bytes is echoed as is.
 *
 * SIGTERM / SIGINT: close the socket, remove the ipc socket file and exit 0.  The signals are blocked before the ZeroMQ context (and so its I/O
 * thread) exists and arrive through a signalfd polled beside the socket: a
 * handler would race with zmq_poll(-1), and the kernel may deliver a process
 * signal to the I/O thread, where it interrupts nothing.
 * On stdout: nothing.  Errors go to stderr, exit status 1.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <zmq.h>

#define MAX_FRAMES 16 /* envelope frames kept; a longer message is dropped */

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Receive one whole multipart message (DONTWAIT on the first frame).
 * Returns the number of frames, 0 when nothing is ready, -1 on a fatal error,
 * -2 when the message was too long (its frames are consumed and dropped). */
static int recv_message(void *sock, zmq_msg_t *f)
{
    int n = 0, more = 1, too_long = 0;
    while (more) {
        zmq_msg_t *m = &f[n < MAX_FRAMES ? n : MAX_FRAMES];
        zmq_msg_init(m);
        if (zmq_msg_recv(m, sock, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            int e = errno;
            zmq_msg_close(m);
            if (n == 0 && (e == EAGAIN || e == EINTR))
                return 0;
            if (e == EINTR)
                continue; /* in the middle of a message: parts are queued */
            for (int i = 0; i < n && i < MAX_FRAMES; i++)
                zmq_msg_close(&f[i]);
            fprintf(stderr, "echo_server: recv: %s\n", zmq_strerror(e));
            return -1;
        }
        more = zmq_msg_more(m);
        if (n >= MAX_FRAMES) {
            zmq_msg_close(m); /* the spare slot */
            too_long = 1;
        } else {
            n++;
        }
    }
    if (too_long) {
        for (int i = 0; i < n; i++)
            zmq_msg_close(&f[i]);
        return -2;
    }
    return n;
}

static int reply(void *sock, zmq_msg_t *f, int n)
{
    /* envelope: moved back as is */
    for (int i = 0; i < n - 1; i++)
        if (zmq_msg_send(&f[i], sock, ZMQ_SNDMORE) < 0)
            goto fail;
    zmq_msg_t *req = &f[n - 1];
    const unsigned char *p = zmq_msg_data(req);
    size_t len = zmq_msg_size(req);
    if (len < 8) {
        if (zmq_msg_send(req, sock, 0) < 0)
            goto fail;
        return 0;
    }
    size_t want = le32(p);
    zmq_msg_t out;
    if (zmq_msg_init_size(&out, want) != 0)
        goto fail;
    size_t k = want < len ? want : len;
    memcpy(zmq_msg_data(&out), p, k);
    if (want > k)
        memset((char *)zmq_msg_data(&out) + k, 0, want - k);
    zmq_msg_close(req);
    if (zmq_msg_send(&out, sock, 0) < 0) {
        zmq_msg_close(&out);
        return -1;
    }
    return 0;
fail:
    /* ROUTER drops a message for a peer that left: only a real error here */
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
    return -1;
}

int main(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: echo_server ENDPOINT\n");
        return 2;
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    int sfd = -1;
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0 ||
        (sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
        perror("echo_server: signalfd");
        return 1;
    }

    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_ROUTER) : NULL;
    int zero = 0;
    if (!sock || zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_bind(sock, argv[1]) != 0) {
        fprintf(stderr, "echo_server: bind %s: %s\n", argv[1],
                zmq_strerror(zmq_errno()));
        if (sock)
            zmq_close(sock);
        if (ctx)
            zmq_ctx_term(ctx);
        return 1;
    }
    int rc = 0, stop = 0;
    zmq_msg_t f[MAX_FRAMES + 1];
    while (!stop) {
        zmq_pollitem_t it[2] = {{.socket = sock, .events = ZMQ_POLLIN},
                                {.fd = sfd, .events = ZMQ_POLLIN}};
        if (zmq_poll(it, 2, -1) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            fprintf(stderr, "echo_server: poll: %s\n", zmq_strerror(zmq_errno()));
            rc = 1;
            break;
        }
        if (it[1].revents & ZMQ_POLLIN)
            break; /* SIGTERM or SIGINT */
        for (;;) { /* drain every ready message, as the daemon does */
            int n = recv_message(sock, f);
            if (n == 0)
                break;
            if (n == -2 || n == 1) { /* too long, or no envelope: drop */
                if (n == 1)
                    zmq_msg_close(&f[0]);
                continue;
            }
            if (n < 0 || reply(sock, f, n) < 0) {
                fprintf(stderr, "echo_server: %s\n", zmq_strerror(zmq_errno()));
                rc = 1;
                stop = 1;
                break;
            }
        }
    }
    zmq_close(sock);
    zmq_ctx_term(ctx);
    close(sfd);
    /* libzmq leaves an ipc socket file behind on close: remove ours (not an
     * abstract "@name", which has no file) */
    if (!strncmp(argv[1], "ipc://", 6) && argv[1][6] && argv[1][6] != '@')
        unlink(argv[1] + 6);
    return rc;
}
