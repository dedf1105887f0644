/*
 * bench/rpc_bench_observers.c - what observability costs the daemon:
 *
 *   rpc_bench --observers metrics|events|all[,...] [--rounds N] [options]
 *
 *   for round in 1..N:                      (the order alternates per round)
 *     off      rpc_bench --side daemon --phases cycle,cycle-tput --json T
 *     metrics  the same + --daemon-arg --metrics-listen=127.0.0.1:PORT,
 *              and a forked scraper: GET /metrics every second
 *     events   --kv_events_endpoint=tcp://127.0.0.1:PORT and a forked SUB
 *     all      both at once, with both consumers
 *   then: cycle p50 (1 client) and cycle throughput (8 clients) of each
 *   observer against "off", medians over the rounds; the throughput the
 *   CPU the observer adds implies (the cores are saturated: steadier than
 *   throughput itself); and with events, the floor: libzmq moving the
 *   runs' event bytes PUB -> SUB with nothing else (events_floor).
 *
 * Each measurement is a whole child rpc_bench (its own daemon, workers and
 * warm-up), so this file needs nothing of rpc_bench.c's state: it reads the
 * child's JSON report.  Adding an observer (a KV-events publisher, say) is
 * one row of OBSERVERS: the daemon option that turns it on and a consumer
 * that runs, forked, while the child measures.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <zmq.h>

#include "bench/common/cli.h"
#include "bench/common/report.h"
#include "rpc/client.h"

#define MAX_ROUNDS 9
#define MAX_OBS 4

/* ---- observers ---------------------------------------------------------------- */

/* Successful consumptions (scrapes, batches), counted by the forked
 * consumers in a shared page (one counter each), so that the report can
 * say the observer really worked. */
static volatile unsigned long *g_consumed;
static int g_part; /* which counter this forked consumer bumps */

/* Scrape http://127.0.0.1:port/metrics every second until killed. */
static void scrape_metrics(unsigned port)
{
    char req[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", buf[65536];
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
            write(fd, req, sizeof(req) - 1) == (ssize_t)(sizeof(req) - 1)) {
            ssize_t n, got = 0;
            bool ok = false;
            while ((n = read(fd, buf, sizeof(buf))) > 0) {
                if (!got)
                    ok = n > 12 && !memcmp(buf + 8, " 200", 4);
                got += n;
            }
            if (ok)
                ++g_consumed[g_part];
        }
        if (fd >= 0)
            close(fd);
        sleep(1);
    }
}

/* A KV-events subscriber (issue 14): every batch (three frames) counts.
 * Its own context, made here in the forked child. */
static void subscribe_events(unsigned port)
{
    char ep[64];
    snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%u", port);
    void *ctx = zmq_ctx_new(), *sub = ctx ? zmq_socket(ctx, ZMQ_SUB) : NULL;
    if (!sub || zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0) || zmq_connect(sub, ep))
        _exit(1);
    for (;;) {
        zmq_msg_t m;
        int more = 1;
        while (more) {
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, sub, 0) < 0) { /* EINTR, or a reconnect */
                zmq_msg_close(&m);
                break;
            }
            more = zmq_msg_more(&m);
            zmq_msg_close(&m);
            if (!more)
                ++g_consumed[g_part];
        }
    }
}

#define MAX_PARTS 2

/* One or more parts (all: both at once, as an operator runs them), each a
 * daemon option and the consumer that runs while the child measures. */
typedef struct observer {
    const char *name;
    const char *daemon_arg[MAX_PARTS]; /* printf format with the port (%u) */
    void (*consume[MAX_PARTS])(unsigned port);
    const char *what[MAX_PARTS];
} observer;

static const observer OBSERVERS[] = {
    {"metrics", {"--metrics-listen=127.0.0.1:%u"}, {scrape_metrics}, {"scrapes"}},
    {"events", {"--kv_events_endpoint=tcp://127.0.0.1:%u"}, {subscribe_events},
     {"event batches"}},
    {"all", {"--metrics-listen=127.0.0.1:%u", "--kv_events_endpoint=tcp://127.0.0.1:%u"},
     {scrape_metrics, subscribe_events}, {"scrapes", "event batches"}},
};
#define NOBS (sizeof(OBSERVERS) / sizeof(OBSERVERS[0]))

/* ---- one child run -------------------------------------------------------------- */

static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
        getsockname(fd, (struct sockaddr *)&sa, &len))
        bench_die("free port: %s", strerror(errno));
    close(fd); /* a race with other programs: acceptable for a benchmark */
    return ntohs(sa.sin_port);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        bench_die("%s: %s", path, strerror(errno));
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef struct figures {
    double p50_us, rate;
    double cpu_us; /* the daemon's CPU per request over the whole run */
    double reqs;   /* the daemon's rpc.requests */
    double cons_us; /* the consumers' CPU per request (they share the cores) */
    double ev_bytes, ev_batches, inserts; /* events.bytes, .batches, rpc.op.insert */
    unsigned long consumed[MAX_PARTS];
} figures;

double proc_cpu_s(pid_t pid); /* rpc_bench.c: NAN when unreadable */
/* kind's ("cycle", "lookup") p50 of the first placement, and its median
 * throughput over the rounds */
static figures parse_report(const char *json, const char *kind)
{
    figures f = {0};
    char key[64];
    snprintf(key, sizeof(key), "\"%s_daemon_", kind);
    const char *p = strstr(json, key);
    const char *q = p ? strstr(p, "\"p50\": ") : NULL;
    if (!q)
        bench_die("child report: no %s latency", kind);
    f.p50_us = strtod(q + 7, NULL);
    snprintf(key, sizeof(key), "\"%s_daemon\": [", kind);
    p = strstr(json, key);
    if (!p)
        bench_die("child report: no %s throughput", kind);
    const char *end = strchr(p, ']');
    double r[64];
    size_t n = 0;
    for (q = strstr(p, "\"rate\": "); q && q < end && n < 64;
         q = strstr(q + 1, "\"rate\": "))
        r[n++] = strtod(q + 8, NULL);
    if (!n)
        bench_die("child report: no throughput rounds");
    f.rate = median(r, n);
    p = strstr(json, "\"daemon_cpu_seconds\": ");
    q = strstr(json, "\"rpc.requests\": ");
    double reqs = q ? strtod(q + 16, NULL) : 0;
    f.cpu_us = p && reqs > 0 ? strtod(p + 22, NULL) / reqs * 1e6 : 0;
    f.reqs = reqs;
    static const char *const key_of[] = {"\"events.bytes\": ",
                                         "\"events.batches\": ",
                                         "\"rpc.op.insert\": "};
    double *val_of[] = {&f.ev_bytes, &f.ev_batches, &f.inserts};
    for (size_t i = 0; i < 3; i++)
        if ((q = strstr(json, key_of[i])))
            *val_of[i] = strtod(q + strlen(key_of[i]), NULL);
    return f;
}

/* Run the child rpc_bench with the observer obs (NULL: none), measuring
 * kind ("cycle" or "lookup"), with extra arguments (NULL-terminated). */
static figures run_child(const char *self, int argc, char **argv,
                         const observer *obs, const char *json,
                         const char *kind, char *const *extra)
{
    unsigned port[MAX_PARTS] = {0};
    int nparts = 0;
    while (obs && nparts < MAX_PARTS && obs->daemon_arg[nparts]) {
        port[nparts] = free_port();
        g_consumed[nparts] = 0;
        nparts++;
    }
    char darg[MAX_PARTS][128];
    char *args[256];
    int k = 0;
    args[k++] = (char *)self;
    for (int i = 1; i < argc && k < 240; i++)
        args[k++] = argv[i];
    args[k++] = "--side";
    args[k++] = "daemon";
    char phases[32];
    snprintf(phases, sizeof(phases), "%s,%s-tput", kind, kind);
    args[k++] = "--phases";
    args[k++] = phases;
    args[k++] = "--json";
    args[k++] = (char *)json;
    for (int i = 0; extra && extra[i] && k < 250; i++)
        args[k++] = extra[i];
    for (int p = 0; p < nparts; p++) {
        snprintf(darg[p], sizeof(darg[p]), obs->daemon_arg[p], port[p]);
        args[k++] = "--daemon-arg";
        args[k++] = darg[p];
    }
    args[k] = NULL;
    pid_t child = fork();
    if (child == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, 1); /* its table: we read its JSON */
        execv(self, args);
        _exit(127);
    }
    pid_t consumer[MAX_PARTS] = {-1, -1};
    for (int p = 0; p < nparts && child > 0; p++)
        if ((consumer[p] = fork()) == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            g_part = p;
            obs->consume[p](port[p]); /* refused until the daemon is up: retried */
            _exit(0);
        }
    int st;
    if (child < 0 || waitpid(child, &st, 0) != child)
        bench_die("child rpc_bench: %s", strerror(errno));
    double cons_s = 0;
    for (int p = 0; p < nparts; p++)
        if (consumer[p] > 0) {
            double cs = proc_cpu_s(consumer[p]);
            cons_s += isnan(cs) ? 0 : cs;
            kill(consumer[p], SIGKILL);
            waitpid(consumer[p], NULL, 0);
        }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        bench_die("child rpc_bench (%s) failed: wait status 0x%x",
                  obs ? obs->name : extra && extra[0] ? extra[0] : "off", st);
    figures f = parse_report(slurp(json), kind);
    for (int p = 0; p < nparts; p++)
        f.consumed[p] = g_consumed[p];
    f.cons_us = f.reqs > 0 ? cons_s / f.reqs * 1e6 : 0;
    return f;
}

/* ---- the floor of KV events: libzmq moving the bytes, nothing else -------------- */

static double now_s(void) { return (double)bench_now_ns() / 1e9; }

static void keep_buffer(void *data, void *hint) { (void)data, (void)hint; }

/* Three frames as the daemon sends them, the payload not copied. */
static void pub_batch(void *pub, char *payload, size_t len, uint64_t seq)
{
    unsigned char sb[8];
    for (int i = 0; i < 8; i++)
        sb[i] = (unsigned char)(seq >> (56 - 8 * i));
    zmq_msg_t m;
    if (zmq_send(pub, "kv@bench@prefixcache", 20, ZMQ_SNDMORE) < 0 ||
        zmq_send(pub, sb, 8, ZMQ_SNDMORE) < 0 ||
        zmq_msg_init_data(&m, payload, len, keep_buffer, NULL) ||
        zmq_msg_send(&m, pub, 0) < 0)
        bench_die("floor: PUB send: %s", zmq_strerror(zmq_errno()));
}

/*
 * The CPU that moving KV events costs below any publisher: batches of the
 * run's mean size, prebuilt (nothing hashed, packed or copied), sent at the
 * run's byte rate for 3 s from a PUB socket in this process to a forked SUB
 * (subscribe_events, the runs' own) over tcp to 127.0.0.1.  Out: ns of CPU
 * per byte in the publishing process (with its libzmq I/O thread, which also
 * runs loopback TCP's receive side) and in the subscriber.
 */
static void events_floor(size_t batch, double bytes_per_s, double *pub_ns,
                         double *sub_ns)
{
    unsigned port = free_port();
    char ep[64];
    snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%u", port);
    g_consumed[0] = 0;
    pid_t sub = fork();
    if (sub == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        g_part = 0;
        subscribe_events(port);
        _exit(0);
    }
    void *ctx = zmq_ctx_new(), *pub = ctx ? zmq_socket(ctx, ZMQ_PUB) : NULL;
    int zero = 0; /* no high-water mark: nothing dropped, all measured */
    char *buf = malloc(batch);
    if (sub < 0 || !pub || !buf ||
        zmq_setsockopt(pub, ZMQ_SNDHWM, &zero, sizeof(zero)) ||
        zmq_setsockopt(pub, ZMQ_LINGER, &zero, sizeof(zero)) || zmq_bind(pub, ep))
        bench_die("floor: PUB on %s: %s", ep, zmq_strerror(zmq_errno()));
    memset(buf, 0xce, batch);
    uint64_t seq = 0;
    for (double t0 = now_s(); !g_consumed[0]; usleep(10000)) { /* connected */
        if (now_s() - t0 > 10)
            bench_die("floor: the subscriber never connected");
        pub_batch(pub, buf, 1, seq++);
    }
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    double s0 = proc_cpu_s(sub), t0 = now_s(), t;
    unsigned long n0 = g_consumed[0], n = 0;
    size_t sent = 0;
    while ((t = now_s() - t0) < 3.0) {
        double due = sent / bytes_per_s;
        if (due > t)
            usleep((useconds_t)((due - t) * 1e6));
        pub_batch(pub, buf, batch, seq++);
        sent += batch;
        n++;
    }
    for (t0 = now_s(); g_consumed[0] - n0 < n && now_s() - t0 < 10;)
        usleep(1000);
    getrusage(RUSAGE_SELF, &r1);
    double s1 = proc_cpu_s(sub);
    if (g_consumed[0] - n0 < n)
        bench_die("floor: the subscriber got %lu of %lu batches",
                  g_consumed[0] - n0, n);
    kill(sub, SIGKILL);
    waitpid(sub, NULL, 0);
    zmq_close(pub);
    zmq_ctx_term(ctx);
    free(buf);
    double pub_s = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) +
                   (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
                   ((r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) +
                    (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec)) * 1e-6;
    *pub_ns = pub_s * 1e9 / (double)sent;
    *sub_ns = (s1 - s0) * 1e9 / (double)sent;
}

static bool publishes_events(const observer *o)
{
    for (int p = 0; p < MAX_PARTS; p++)
        if (o->consume[p] == subscribe_events)
            return true;
    return false;
}

/* What both modes need before their children run: the consumers' shared
 * counters, and this program's own path (the children are runs of it). */
static void children_setup(char *self, size_t cap)
{
    g_consumed = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_consumed == MAP_FAILED)
        bench_die("mmap: %s", strerror(errno));
    ssize_t sl = readlink("/proc/self/exe", self, cap - 1);
    if (sl <= 0)
        bench_die("/proc/self/exe: %s", strerror(errno));
    self[sl] = 0;
}

/* Strip --observers LIST and --rounds N out of argv for the children. */
int rpc_bench_observers_main(int argc, char **argv)
{
    const observer *use[MAX_OBS];
    size_t nuse = 0, rounds = 3;
    char *kept[256];
    int nk = 0;
    kept[nk++] = argv[0];
    for (int i = 1; i < argc && nk < 250; i++) {
        if (!strcmp(argv[i], "--observers") && i + 1 < argc) {
            char list[128];
            snprintf(list, sizeof(list), "%s", argv[++i]);
            for (char *sv = NULL, *t = strtok_r(list, ",", &sv); t;
                 t = strtok_r(NULL, ",", &sv)) {
                size_t o = 0;
                while (o < NOBS && strcmp(OBSERVERS[o].name, t))
                    o++;
                if (o == NOBS)
                    bench_die("--observers: unknown '%s' (known: metrics, "
                              "events, all)", t);
                if (nuse == MAX_OBS)
                    bench_die("--observers: at most %d", MAX_OBS);
                use[nuse++] = &OBSERVERS[o];
            }
        } else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
            rounds = (size_t)bench_arg_u64(argv[++i], "--rounds", 1, MAX_ROUNDS);
        } else {
            kept[nk++] = argv[i];
        }
    }
    kept[nk] = NULL;
    if (!nuse)
        bench_die("--observers: which? (metrics, events, all)");
    char self[4096];
    children_setup(self, sizeof(self));
    char json[] = "/tmp/rpc_bench_obs_XXXXXX";
    int jfd = mkstemp(json);
    if (jfd < 0)
        bench_die("mkstemp: %s", strerror(errno));
    close(jfd);
    double p50[MAX_OBS + 1][MAX_ROUNDS], rate[MAX_OBS + 1][MAX_ROUNDS];
    double cpu[MAX_OBS + 1][MAX_ROUNDS], cons[MAX_OBS + 1][MAX_ROUNDS];
    double rpi[MAX_OBS + 1][MAX_ROUNDS]; /* requests per insert (per cycle) */
    double ev_ins[MAX_ROUNDS * MAX_OBS], ev_batch[MAX_ROUNDS * MAX_OBS];
    size_t nev = 0; /* the events runs' bytes per insert and per batch */
    for (size_t r = 0; r < rounds; r++)
        for (size_t j = 0; j <= nuse; j++) {
            size_t o = r % 2 ? nuse - j : j; /* off first, then last first */
            const observer *obs = o ? use[o - 1] : NULL;
            bench_say("round %zu/%zu: %s", r + 1, rounds, obs ? obs->name : "off");
            figures f = run_child(self, nk, kept, obs, json, "cycle", NULL);
            p50[o][r] = f.p50_us;
            rate[o][r] = f.rate;
            cpu[o][r] = f.cpu_us;
            cons[o][r] = f.cons_us;
            rpi[o][r] = f.inserts > 0 ? f.reqs / f.inserts : 0;
            if (obs && publishes_events(obs) && f.inserts > 0 && f.ev_batches > 0) {
                ev_ins[nev] = f.ev_bytes / f.inserts;
                ev_batch[nev++] = f.ev_bytes / f.ev_batches;
            }
            bench_say("  cycle p50 %.1f us, cycle throughput %.0f/s, daemon CPU "
                      "%.2f us/request, its consumers' %.2f%s", f.p50_us, f.rate,
                      f.cpu_us, f.cons_us, obs ? "" : " (no observer)");
            for (int p = 0; obs && p < MAX_PARTS && obs->what[p]; p++)
                bench_say("  %s: %lu %s during the run", obs->name,
                          f.consumed[p], obs->what[p]);
        }
    unlink(json);
    double base_p50 = median(p50[0], rounds), base_rate = median(rate[0], rounds);
    double base_cpu = median(cpu[0], rounds);
    /* With 8 clients both cores are saturated: a cycle without the
     * observer costs ncpu / throughput of CPU, and whatever the observer
     * adds (the daemon's CPU, the consumers') comes out of throughput.
     * That estimate moves far less from run to run than throughput. */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double all_us = (double)ncpu / base_rate * 1e6;
    printf("observer   cycle p50 (us)  vs off   cycle tput 8 cl. (/s)  vs off   "
           "daemon CPU (us/req)  vs off   consumers' CPU (us/req)   "
           "CPU-implied tput\n");
    printf("off        %14.1f          %21.0f          %19.2f\n", base_p50,
           base_rate, base_cpu);
    for (size_t o = 1; o <= nuse; o++) {
        double a = median(p50[o], rounds), b = median(rate[o], rounds);
        double c = median(cpu[o], rounds), d = median(cons[o], rounds);
        double extra = (c - base_cpu + d) * median(rpi[o], rounds); /* per cycle */
        printf("%-10s %14.1f  %+6.1f%%  %21.0f  %+6.1f%%  %19.2f  %+6.1f%%  %23.2f   "
               "%+15.1f%%\n",
               use[o - 1]->name, a, 100 * (a / base_p50 - 1), b,
               100 * (b / base_rate - 1), c, 100 * (c / base_cpu - 1), d,
               100 * (all_us / (all_us + extra) - 1));
    }
    printf("(medians of %zu rounds, each a whole rpc_bench run on its own daemon; "
           "target: within 5%%; CPU-implied: %ld CPUs / %.0f cycles/s = %.1f us "
           "of CPU per cycle without observers, against the CPU the observer adds "
           "per cycle)\n", rounds, ncpu, base_rate, all_us);
    if (nev) { /* the same arithmetic for the transport alone */
        double per_ins = median(ev_ins, nev), batch = median(ev_batch, nev);
        double pub_ns, sub_ns;
        events_floor((size_t)batch, per_ins * base_rate, &pub_ns, &sub_ns);
        double pub_us = pub_ns * per_ins / 1e3, sub_us = sub_ns * per_ins / 1e3;
        printf("the floor on this machine: libzmq alone, moving the runs' %.0f bytes "
               "of events per insert (batches of %.0f KB at %.1f MB/s) from a PUB to "
               "a SUB over tcp to 127.0.0.1 with nothing hashed, packed or copied, "
               "costs %.2f us of CPU per insert (publisher %.2f, subscriber %.2f; "
               "%.2f and %.2f ns a byte); on top of the run without events (%ld CPUs "
               "/ %.0f cycles/s = %.1f us of CPU per cycle) that allows at best "
               "throughput %+.1f%% with the subscriber here, %+.1f%% with it on "
               "another host (target: within 5%%)\n",
               per_ins, batch / 1024, per_ins * base_rate / 1e6, pub_us + sub_us,
               pub_us, sub_us, pub_ns, sub_ns, ncpu, base_rate, all_us,
               100 * (all_us / (all_us + pub_us + sub_us) - 1),
               100 * (all_us / (all_us + pub_us) - 1));
    }
    return 0;
}

/* ---- --curve-cost: CURVE on tcp against plain tcp (issue 15) --------------------- */

/*
 *   rpc_bench --curve-cost [--rounds N] [rpc_bench options]
 *
 *   keys: a server key pair, a client key pair, an allow-list (admin), in
 *   a private directory
 *   for round in 1..N:                       (the order alternates per round)
 *     off    rpc_bench --side daemon --phases lookup,lookup-tput --tcp PORT
 *     curve  the same + --curve-dir DIR (the daemon gets curve_key_file and
 *            allow_list_file; every client connects with the keys)
 *   then: lookup p50 (1 client) and lookup throughput (8 clients) of curve
 *   against off, medians over the rounds.  Both on tcp to 127.0.0.1, so the
 *   difference is CURVE alone (ipc would add the transport's).
 */
/* What libsodium's XSalsa20-Poly1305 costs on this machine for an n-byte
 * ZeroMQ message, in us: libzmq's CURVE boxes every message once per
 * direction with crypto_box_afternm (32 zero bytes + a flags byte + the
 * message) and opens it with crypto_box_open_afternm.  Best of 5 batches;
 * the sum of both, the CPU one message costs its two ends. */
static double box_us(size_t n)
{
    size_t len = n + crypto_box_ZEROBYTES + 1;
    unsigned char *m = calloc(1, len), *c = calloc(1, len), *o = calloc(1, len);
    unsigned char k[crypto_box_BEFORENMBYTES], nonce[crypto_box_NONCEBYTES] = {0};
    if (!m || !c || !o || sodium_init() < 0)
        bench_die("libsodium: no memory or no init");
    randombytes_buf(k, sizeof(k));
    randombytes_buf(m + crypto_box_ZEROBYTES, len - crypto_box_ZEROBYTES);
    double best = 1e30;
    for (int b = 0; b < 5; b++) {
        struct timespec t0, t1;
        int bad = 0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < 100; i++) {
            bad |= crypto_box_afternm(c, m, len, nonce, k);
            bad |= crypto_box_open_afternm(o, c, len, nonce, k);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (bad)
            bench_die("libsodium: a box did not open");
        double us = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e3 / 100;
        best = us < best ? us : best;
    }
    free(m);
    free(c);
    free(o);
    return best;
}

/* "lookup_request": N and "lookup_reply": [min, max] from a child's report */
static void lookup_bytes(const char *json, double *req, double *rep)
{
    const char *p = strstr(json, "\"lookup_request\": ");
    const char *q = strstr(json, "\"lookup_reply\": [");
    *req = p ? strtod(p + 18, NULL) : 0;
    *rep = q ? strtod(q + 17, NULL) : 0;
}

int rpc_bench_curve_main(int argc, char **argv)
{
    size_t rounds = 3;
    char *kept[256];
    int nk = 0;
    kept[nk++] = argv[0];
    for (int i = 1; i < argc && nk < 250; i++) {
        if (!strcmp(argv[i], "--curve-cost"))
            continue;
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = (size_t)bench_arg_u64(argv[++i], "--rounds", 1, MAX_ROUNDS);
        else
            kept[nk++] = argv[i];
    }
    kept[nk] = NULL;
    char self[4096];
    children_setup(self, sizeof(self));
    char dir[] = "/tmp/rpc_bench_curve_XXXXXX";
    if (!mkdtemp(dir))
        bench_die("mkdtemp: %s", strerror(errno));
    char srv[4096], cli[4096], allow[4096];
    snprintf(srv, sizeof(srv), "%s/server.key", dir);
    snprintf(cli, sizeof(cli), "%s/client.key", dir);
    snprintf(allow, sizeof(allow), "%s/allow", dir);
    char spub[41], ssec[41], cpub[41], csec[41];
    if (zmq_curve_keypair(spub, ssec) || zmq_curve_keypair(cpub, csec) ||
        pc_rpc_keyfile_write(srv, spub, ssec) || pc_rpc_keyfile_write(cli, cpub, csec))
        bench_die("CURVE keys in %s: %s", dir, strerror(errno));
    FILE *af = fopen(allow, "w");
    if (!af || fprintf(af, "%s admin\n", cpub) < 0 || fclose(af))
        bench_die("%s: %s", allow, strerror(errno));
    char json[] = "/tmp/rpc_bench_curve_json_XXXXXX";
    int jfd = mkstemp(json);
    if (jfd < 0)
        bench_die("mkstemp: %s", strerror(errno));
    close(jfd);
    double p50[2][MAX_ROUNDS], rate[2][MAX_ROUNDS], cpu[2][MAX_ROUNDS];
    double req_b = 0, rep_b = 0;
    static const char *const name[2] = {"off", "curve"};
    for (size_t r = 0; r < rounds; r++)
        for (size_t j = 0; j < 2; j++) {
            size_t o = r % 2 ? 1 - j : j; /* off first, then curve first */
            char port[16];
            snprintf(port, sizeof(port), "%u", free_port());
            char *extra[] = {"--tcp", port, o ? "--curve-dir" : NULL, dir, NULL};
            bench_say("round %zu/%zu: tcp, CURVE %s", r + 1, rounds, name[o]);
            figures f = run_child(self, nk, kept, NULL, json, "lookup", extra);
            if (!req_b)
                lookup_bytes(slurp(json), &req_b, &rep_b);
            p50[o][r] = f.p50_us;
            rate[o][r] = f.rate;
            cpu[o][r] = f.cpu_us;
            bench_say("  lookup p50 %.1f us, lookup throughput %.0f/s, daemon "
                      "CPU %.2f us/request", f.p50_us, f.rate, f.cpu_us);
        }
    unlink(json);
    unlink(srv);
    unlink(cli);
    unlink(allow);
    rmdir(dir);
    double bp = median(p50[0], rounds), br = median(rate[0], rounds);
    double cp = median(p50[1], rounds), cr = median(rate[1], rounds);
    double bc = median(cpu[0], rounds), cc = median(cpu[1], rounds);
    printf("tcp 127.0.0.1   lookup p50 (us)   x off   lookup tput 8 cl. (/s)   "
           "x off   daemon CPU (us/req)   x off\n");
    printf("CURVE off       %15.1f           %22.0f           %19.2f\n", bp, br,
           bc);
    printf("CURVE on        %15.1f   %5.2f   %22.0f   %5.2f   %19.2f   %5.2f\n",
           cp, cp / bp, cr, cr / br, cc, cc / bc);
    printf("(medians of %zu rounds, each a whole rpc_bench run on its own daemon; "
           "targets: p50 <= 1.3x off: %s, throughput >= 0.7x off: %s)\n", rounds,
           cp <= 1.3 * bp ? "met" : "NOT met", cr >= 0.7 * br ? "met" : "NOT met");
    /* The floor: the crypto alone, measured here, added to the run without
     * CURVE.  A lookup's request and reply are each boxed and opened once,
     * in series (p50); with 8 clients the cores are saturated, so all the
     * CPU of a lookup without CURVE is ncpu / throughput. */
    double req_us = box_us((size_t)req_b), rep_us = box_us((size_t)rep_b);
    double crypto = req_us + rep_us;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double all_us = br > 0 ? (double)ncpu / br * 1e6 : 0;
    printf("the floor on this machine: libsodium's XSalsa20-Poly1305 boxes and "
           "opens the %.0f-byte request in %.1f us (%.2f ns a byte each way) and the "
           "%.0f-byte reply in %.1f us: %.1f us of CPU per lookup that no "
           "implementation on libzmq's CURVE avoids; on top of the run without "
           "CURVE (p50 %.1f us; %ld CPUs / %.0f lookups/s = %.1f us of CPU per "
           "lookup) it allows at best p50 %.2fx and throughput %.2fx (targets: "
           "1.3x, 0.7x)\n",
           req_b, req_us, req_us * 1e3 / 2 / (req_b + 33), rep_b, rep_us, crypto, bp,
           ncpu, br, all_us, (bp + crypto) / bp,
           all_us > 0 ? all_us / (all_us + crypto) : 0);
    return 0;
}
