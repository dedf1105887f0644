/*
 * daemon/main.c - prefixcached: parse, configure, serve, exit.
 *
 * Exit status: 0 after a clean stop (SIGTERM/SIGINT) or --help/--version;
 * 1 for anything that kept the daemon from starting (a bad option or
 * config file, the endpoint held by another daemon, no pool) or a fatal
 * socket error while serving.  A message says why; never a stack trace.
 */
#include "daemon/daemon.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    char err[512];
    pcd_cmdline cl;
    int rc = pcd_cmdline_parse(argc, argv, &cl, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "prefixcached: %s\n", err);
        pcd_cmdline_free(&cl);
        return 1;
    }
    if (cl.help || cl.help_markdown || cl.version) {
        if (cl.help)
            pcd_config_write_help(stdout, argv[0]);
        else if (cl.help_markdown)
            pcd_config_write_markdown(stdout);
        else
            printf("prefixcached %s (protocol %d.%d)\ncuda: %s\n", PCD_VERSION,
                   PC_PROTO_MAJOR, PC_PROTO_MINOR, PCD_CUDA_INFO);
        pcd_cmdline_free(&cl);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    pcd_config cfg;
    if ((rc = pcd_config_load(&cfg, &cl, err, sizeof(err)))) {
        fprintf(stderr, "prefixcached: %s\n", err);
        pcd_cmdline_free(&cl);
        return 1;
    }
    pcd_daemon *d = NULL;
    int prefault = pcd_prefault_install(); /* before the tree allocates */
    if (pcd_signals_install()) {
        pcd_log(PC_LOG_ERROR, "cannot start: cannot install signal handlers");
        pcd_cmdline_free(&cl);
        return 1;
    }
    if ((rc = pcd_daemon_create(&cfg, &cl, &d, err, sizeof(err)))) {
        pcd_log(PC_LOG_ERROR, "cannot start: %s", err);
        pcd_cmdline_free(&cl);
        return 1;
    }
    pcd_log(PC_LOG_DEBUG, "memory: %s", prefault == 0
            ? "new jemalloc extents pre-faulted in idle time"
            : "demand-faulted (no jemalloc extent hooks)");
    rc = pcd_daemon_run(d);
    pcd_daemon_destroy(d);
    pcd_cmdline_free(&cl);
    return rc ? 1 : 0;
}
