/*
 * bench/soak/stale_repro.c - the smallest reproduction of what soak guards
 * against: after a daemon restart, a libprefixcache client that held no
 * lease gets no error at all, and reads and writes the new daemon's block
 * ids through its mapping of the dead daemon's pool.
 *
 *   A: hello (maps pool object O1)
 *   kill -9 the daemon, start it again (it unlinks O1, creates O2)
 *   B: hello (O2); insert page P, its block written with 0xAB
 *   A: lookup(P, pin) -> status 0, P hit in block b; A reads b through O1
 *   A: lookup(Q, pin, alloc), writes 0xCD into its block (through O1),
 *      insert -> status 0
 *   B: lookup(Q, pin) -> hit: the bytes are not 0xCD (A wrote elsewhere)
 *
 * Fixed by protocol 1.3's instance: hello names the daemon's, a client
 * that mapped the pool names it in lookup, alloc and insert, and another
 * daemon refuses them with PC_E_STALE.  Exit 0 when A is refused until it
 * says hello again and then sees the right bytes, 1 when A's calls succeed
 * against the dead pool (it reproduces), 2 when something else went wrong.
 *   stale_repro [PREFIXCACHED]
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rpc/client.h"

#ifndef PC_DAEMON_PATH
#define PC_DAEMON_PATH "prefixcached"
#endif

static char ep[128], log_path[128];

static pid_t start(const char *bin)
{
    char a1[160];
    snprintf(a1, sizeof a1, "--endpoint=%s", ep);
    char *argv[] = {(char *)bin, a1, "--pool_backend=host", "--pool_blocks=16",
                    "--layers=1", "--kv_heads=1", "--head_dim=16", "--dtype=fp16",
                    "--page_tokens=4", NULL};
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (!freopen(log_path, "a", stdout) || !freopen(log_path, "a", stderr))
            _exit(127);
        execv(bin, argv);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) { /* up to 10 s */
        pc_client *c;
        if (pc_client_connect(ep, 200, &c) == 0) {
            int rc = pc_client_ping(c);
            pc_client_close(c);
            if (rc == 0)
                return pid;
        }
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "the daemon did not start (log %s)\n", log_path);
    exit(2);
}

#define CHECK(x)                                                               \
    do {                                                                       \
        int rc_ = (x);                                                         \
        if (rc_) {                                                             \
            fprintf(stderr, "%s: %s\n", #x, pc_errname(rc_));                  \
            exit(2);                                                           \
        }                                                                      \
    } while (0)

int main(int argc, char **argv)
{
    const char *bin = argc > 1 ? argv[1] : PC_DAEMON_PATH;
    char dir[] = "/tmp/pc-stale.XXXXXX";
    if (!mkdtemp(dir))
        return 2;
    snprintf(ep, sizeof ep, "ipc://%s/prefixcache.sock", dir);
    snprintf(log_path, sizeof log_path, "%s/daemon.log", dir);
    pid_t d = start(bin);

    pc_client *a, *b;
    pc_hello h;
    CHECK(pc_client_connect(ep, 2000, &a));
    CHECK(pc_client_hello(a, &h));
    size_t bb = h.block_bytes;

    kill(d, SIGKILL); /* the restart */
    waitpid(d, NULL, 0);
    d = start(bin);

    CHECK(pc_client_connect(ep, 2000, &b));
    CHECK(pc_client_hello(b, &h));
    const uint32_t p[4] = {1, 2, 3, 4}, q[4] = {5, 6, 7, 8};
    pc_client_lookup_result r;
    CHECK(pc_client_lookup(b, "x", 1, p, 4, PC_CLIENT_PIN | PC_CLIENT_ALLOC, 0, &r));
    uint32_t id = r.alloc_blocks[0];
    memset(pc_client_block(b, id), 0xAB, bb);
    CHECK(pc_client_insert(b, "x", 1, p, 4, &id, r.lease, PC_CLIENT_RELEASE, NULL, NULL));

    /* A carries on as if nothing happened: every call that names block
     * ids must be refused (PC_E_STALE, protocol 1.3) until A says hello
     * again; before the fix each succeeded and A read and wrote the dead
     * pool through its old mapping. */
    int la = pc_client_lookup(a, "x", 1, p, 4, PC_CLIENT_PIN, 0, &r);
    unsigned char got = la == 0 && r.pages
                            ? *(unsigned char *)pc_client_block(a, r.blocks[0]) : 0;
    uint64_t lease = 0;
    uint32_t stale_id;
    int aa = pc_client_alloc(a, 1, &lease, &stale_id);
    uint32_t zero = 0;
    int ia = pc_client_insert(a, "x", 1, q, 4, &zero, 0, 0, NULL, NULL);
    printf("A after the restart: lookup(P) %s (reads 0x%02x), alloc %s, insert %s\n",
           pc_errname(la), got, pc_errname(aa), pc_errname(ia));
    bool refused = la == PC_E_STALE && aa == PC_E_STALE && ia == PC_E_STALE;
    if (!refused) {
        printf("REPRODUCED: A used a dead pool with no error\n");
        return 1;
    }
    /* hello again: the new pool is mapped, and everything works */
    CHECK(pc_client_hello(a, &h));
    CHECK(pc_client_lookup(a, "x", 1, p, 4, PC_CLIENT_PIN, 0, &r));
    if (r.pages != 1)
        return fprintf(stderr, "A: P not hit\n"), 2;
    got = *(unsigned char *)pc_client_block(a, r.blocks[0]);
    CHECK(pc_client_release(a, r.lease));
    CHECK(pc_client_lookup(a, "x", 1, q, 4, PC_CLIENT_PIN | PC_CLIENT_ALLOC, 0, &r));
    uint32_t qa = r.alloc_blocks[0];
    memset(pc_client_block(a, qa), 0xCD, bb);
    CHECK(pc_client_insert(a, "x", 1, q, 4, &qa, r.lease, PC_CLIENT_RELEASE, NULL, NULL));
    CHECK(pc_client_lookup(b, "x", 1, q, 4, PC_CLIENT_PIN, 0, &r));
    unsigned char got2 = r.pages ? *(unsigned char *)pc_client_block(b, r.blocks[0]) : 0;
    printf("A after hello: reads P as 0x%02x (B wrote 0xab); B reads A's Q as "
           "0x%02x (A wrote 0xcd)\n", got, got2);

    pc_client_close(a);
    pc_client_close(b);
    kill(d, SIGTERM);
    waitpid(d, NULL, 0);
    unlink(log_path);
    rmdir(dir);
    bool ok = got == 0xAB && got2 == 0xCD;
    printf("%s\n", ok ? "fixed: A was refused until it said hello again"
                      : "after hello again, A or B read the wrong bytes");
    return ok ? 0 : 1;
}
