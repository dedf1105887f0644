/*
 * rpc/keys.c - CURVE key files, shared by the daemon, libprefixcache and
 * prefixcache-cli (docs/SECURITY.md has the format):
 *
 *   # a comment (a whole line: '#' is one of Z85's characters)
 *   public-key = <40 Z85 characters>
 *   secret-key = <40 Z85 characters>     (a key pair file only)
 *
 * Why our own small text format rather than ZeroMQ's zcert files: zcert
 * is CZMQ's (a dependency we do not have), and two `name = value` lines
 * are all an operator needs to read, diff and distribute.  A secret key
 * file must not be readable by group or others: reading one that is
 * refuses, as ssh does, since a leaked secret key is a stolen identity.
 */
#include "rpc/client.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

static int bad(char *err, size_t errlen, int code, const char *fmt,
               const char *a, const char *b)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, a, b);
    return code;
}

int pc_rpc_key_valid(const char *z85)
{
    uint8_t raw[32];
    if (!z85 || strlen(z85) != PC_CURVE_KEY_LEN)
        return 0;
    return zmq_z85_decode(raw, z85) != NULL;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' ||
                 s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

int pc_rpc_keyfile_read(const char *path, char pub[PC_CURVE_KEY_LEN + 1],
                        char sec[PC_CURVE_KEY_LEN + 1], char *err,
                        size_t errlen)
{
    if (!path || !*path || !pub)
        return bad(err, errlen, PC_E_INVAL, "no key file given%s%s", "", "");
    pub[0] = 0;
    if (sec)
        sec[0] = 0;
    FILE *f = fopen(path, "re");
    if (!f)
        return bad(err, errlen, errno == ENOENT ? PC_E_NOENT : PC_E_IO,
                   "cannot read key file %s: %s", path, strerror(errno));
    char line[512];
    int rc = 0, saw_sec = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        char *t = trim(line);
        if (!*t || *t == '#') /* whole lines only: '#' is a Z85 digit */
            continue;
        char *eq = strchr(t, '=');
        if (!eq) {
            rc = bad(err, errlen, PC_E_INVAL, "key file %s: '%s' is not "
                     "'name = value'", path, t);
            break;
        }
        *eq = 0;
        char *name = trim(t), *val = trim(eq + 1);
        char *dst = strcmp(name, "public-key") == 0   ? pub
                    : strcmp(name, "secret-key") == 0 ? (saw_sec = 1, sec)
                                                      : NULL;
        if (!dst && strcmp(name, "secret-key") != 0)
            rc = bad(err, errlen, PC_E_INVAL, "key file %s: unknown name '%s' "
                     "(public-key, secret-key)", path, name);
        else if (!pc_rpc_key_valid(val))
            rc = bad(err, errlen, PC_E_INVAL, "key file %s: %s is not 40 Z85 "
                     "characters", path, name);
        else if (dst)
            memcpy(dst, val, PC_CURVE_KEY_LEN + 1);
    }
    struct stat st;
    bool open_mode = fstat(fileno(f), &st) == 0 && (st.st_mode & 077);
    fclose(f);
    if (rc)
        return rc;
    if (sec && saw_sec && open_mode)
        return bad(err, errlen, PC_E_PERM, "key file %s holds a secret key "
                   "but group or others may read it (chmod 600 %s)", path, path);
    if (!pub[0])
        return bad(err, errlen, PC_E_INVAL, "key file %s has no public-key%s",
                   path, "");
    if (sec && !saw_sec)
        return bad(err, errlen, PC_E_INVAL, "key file %s has no secret-key (a "
                   "public key file? a key pair is needed here)%s", path, "");
    if (sec) { /* the pair must belong together: a pasted mix-up fails here */
        char derived[PC_CURVE_KEY_LEN + 1];
        if (zmq_curve_public(derived, sec) != 0 || strcmp(derived, pub) != 0)
            return bad(err, errlen, PC_E_INVAL, "key file %s: public-key is "
                       "not the secret-key's public key%s", path, "");
    }
    return 0;
}

int pc_rpc_keyfile_write(const char *path, const char *pub, const char *sec)
{
    if (!path || !pc_rpc_key_valid(pub) || (sec && !pc_rpc_key_valid(sec)))
        return PC_E_INVAL;
    /* O_EXCL: keygen never overwrites a key someone may depend on. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                  sec ? 0600 : 0644);
    if (fd < 0)
        return errno == EEXIST ? PC_E_BUSY : PC_E_IO;
    if (sec && fchmod(fd, 0600) != 0) { /* whatever the umask */
        close(fd);
        unlink(path);
        return PC_E_IO;
    }
    char buf[256];
    int n = snprintf(buf, sizeof(buf),
                     "# prefixcache CURVE %s (prefixcache-cli keygen)\n"
                     "public-key = %s\n%s%s%s",
                     sec ? "key pair: keep this file secret" : "public key",
                     pub, sec ? "secret-key = " : "", sec ? sec : "",
                     sec ? "\n" : "");
    int ok = write(fd, buf, (size_t)n) == n;
    if (close(fd) != 0 || !ok) {
        unlink(path);
        return PC_E_IO;
    }
    return 0;
}
