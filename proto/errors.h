/*
 * proto/errors.h - the one error enum of every prefixcache room.
 *
 * Every function in the project returns 0 or one of these negative codes,
 * and the same numbers travel in the `status` field of protocol replies, so
 * the codes are stable: append new ones, never renumber.
 *
 * The table is an X-macro so that the enum, pc_strerror() and pc_errname()
 * cannot drift apart (the libuv/nng pattern).  This header has no msgpack
 * in it: radix/ and blockpool/ include it and nothing of the wire.
 */
#ifndef PC_ERRORS_H
#define PC_ERRORS_H

/*      name        value  message */
#define PC_ERRNO_MAP(X)                                                        \
    X(OK,           0,   "success")                                            \
    X(INVAL,       -1,   "invalid argument")                                   \
    X(NOMEM,       -2,   "out of memory")                                      \
    X(RANGE,       -3,   "value out of range")                                 \
    X(NOTLOCKED,   -4,   "node is not locked (unlock below zero)")             \
    X(CORRUPT,     -5,   "internal invariant violated")                        \
    X(NOSPACE,     -6,   "no free blocks and nothing evictable")               \
    X(NOENT,       -7,   "no such entry")                                      \
    X(BADMSG,      -8,   "malformed message")                                  \
    X(BADOP,       -9,   "unknown operation")                                  \
    X(TOOBIG,      -10,  "message or field exceeds a limit")                   \
    X(LEASE,       -11,  "unknown or expired lease")                           \
    X(PERM,        -12,  "not permitted")                                      \
    X(STATE,       -13,  "block is in the wrong state")                        \
    X(VERSION,     -14,  "unsupported protocol version")                       \
    X(TIMEOUT,     -15,  "operation timed out")                                \
    X(IO,          -16,  "system or I/O error")                                \
    X(LIMIT,       -17,  "a configured limit was reached")                     \
    X(BUSY,        -18,  "resource busy")                                     \
    X(STALE,       -19,  "the daemon restarted since this client's hello")

enum pc_errno {
#define PC__ERR_ENUM(name, value, msg) PC_E_##name = (value),
    PC_ERRNO_MAP(PC__ERR_ENUM)
#undef PC__ERR_ENUM
};

/* Readable message for a code; never NULL ("unknown error" for strangers). */
const char *pc_strerror(int code);

/* Symbolic name of a code ("PC_E_INVAL"); never NULL. */
const char *pc_errname(int code);

/*
 * For *_check() implementations: when cond is false, print
 * "<who>: <message> [cond]" to stderr, set the local `rc` to PC_E_CORRUPT
 * and jump to the local label `out` (which frees the check's scratch).
 * Needs <stdio.h>.
 */
#define PC_CHECK_OR_OUT(who, cond, ...)                                        \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s: ", (who));                                    \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, " [%s]\n", #cond);                                 \
            rc = PC_E_CORRUPT;                                                 \
            goto out;                                                          \
        }                                                                      \
    } while (0)

#endif /* PC_ERRORS_H */
