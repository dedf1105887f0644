/*
 * rpc/endpoint.c - the default endpoint: a Unix socket in a directory that
 * only its user can write, found the same way by the daemon and by every
 * client (prefixcache-cli, engines linking libprefixcache).
 *
 *   candidate directory                    when            created
 *   $XDG_RUNTIME_DIR                       set             no: the session's
 *   /run/prefixcache                       euid 0          yes, 0700
 *   /tmp/prefixcache-<euid>                always          yes, 0700
 *   $HOME/.prefixcache                     always          yes, 0700
 *                 │
 *                 ▼  the first that passes the check gives
 *   ipc://DIR/prefixcache.sock      (the daemon's lock: DIR/prefixcache.sock.lock)
 *
 * The check: lstat (a symlink fails) says a directory, owned by our euid,
 * not writable by group or others.  The socket's directory decides who can
 * bind there: in a shared one (the old default, /tmp/prefixcache-<uid>.sock)
 * another local user could pre-create the path or hold its lock file, so
 * that the daemon cannot start, or bind a fake daemon that the victim's
 * clients talk to.  In a directory only we can write, nobody else can do
 * either.  A squatter who pre-creates /tmp/prefixcache-<uid> only pushes
 * both sides to the next candidate, because both run the same checks; and
 * because clients create the directory too, nobody can create it after a
 * client has chosen it.  Parents are not checked: /tmp is sticky (nobody
 * can rename our directory away), /run and $HOME are not writable by others.
 *
 * Both sides must see the same XDG_RUNTIME_DIR and HOME (or be given the
 * endpoint); an engine under another uid resolves its own user's directory,
 * so multi-user set-ups pass the endpoint explicitly (proto/PROTOCOL.md 2.2).
 */
#include "rpc/client.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SOCK_NAME "/prefixcache.sock"
#define SUN_PATH_MAX 107 /* bytes a Unix socket path may hold */

/* 0 when dir is (or, with create, has just become) a private directory of
 * ours; PC_E_PERM when it is not one, PC_E_IO when it cannot be made. */
static int private_dir(const char *dir, bool create)
{
    if (create) {
        if (mkdir(dir, 0700) == 0) {
            /* the umask may have taken bits away; nobody else can have
             * replaced what we just made in a sticky or private parent */
            if (chmod(dir, 0700) != 0)
                return PC_E_IO;
        } else if (errno != EEXIST) {
            return PC_E_IO;
        }
    }
    struct stat st;
    if (lstat(dir, &st) != 0)
        return PC_E_IO;
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & (S_IWGRP | S_IWOTH)))
        return PC_E_PERM;
    return 0;
}

int pc_rpc_endpoint_from(const pc_rpc_rundir *dirs, size_t n, char *buf,
                         size_t len)
{
    if (!buf || !len || (n && !dirs))
        return PC_E_INVAL;
    buf[0] = 0;
    for (size_t i = 0; i < n; i++) {
        const char *d = dirs[i].path;
        if (!d || d[0] != '/' || strlen(d) + strlen(SOCK_NAME) > SUN_PATH_MAX ||
            private_dir(d, dirs[i].create) != 0)
            continue;
        if ((size_t)snprintf(buf, len, "ipc://%s" SOCK_NAME, d) >= len) {
            buf[0] = 0;
            return PC_E_RANGE;
        }
        return 0;
    }
    return PC_E_PERM;
}

static const char *home_dir(char *buf, size_t len)
{
    const char *h = getenv("HOME");
    if (h && h[0] == '/')
        return h;
    struct passwd pw, *res = NULL;
    if (getpwuid_r(geteuid(), &pw, buf, len, &res) == 0 && res &&
        res->pw_dir && res->pw_dir[0] == '/')
        return res->pw_dir;
    return NULL;
}

int pc_rpc_default_endpoint(char *buf, size_t len)
{
    char tmp[64], home[SUN_PATH_MAX + 1], pwbuf[1024];
    const char *h = home_dir(pwbuf, sizeof(pwbuf));
    snprintf(tmp, sizeof(tmp), "/tmp/prefixcache-%lu", (unsigned long)geteuid());
    if (!h || (size_t)snprintf(home, sizeof(home), "%s/.prefixcache", h) >= sizeof(home))
        home[0] = 0; /* too long for a socket path anyway */
    const pc_rpc_rundir dirs[] = {
        {getenv("XDG_RUNTIME_DIR"), false},
        {geteuid() == 0 ? "/run/prefixcache" : NULL, true},
        {tmp, true},
        {home[0] ? home : NULL, true},
    };
    return pc_rpc_endpoint_from(dirs, sizeof(dirs) / sizeof(dirs[0]), buf, len);
}
