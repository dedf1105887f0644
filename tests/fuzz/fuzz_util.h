/*
 * tests/fuzz/fuzz_util.h - what the libFuzzer targets share: the verdict
 * (abort with a line, so that libFuzzer reports the input and saves it)
 * and a strict UTF-8 check of every str in a decoded msgpack object.
 *
 * The UTF-8 check is written apart from proto/'s pc_utf8_valid (the code
 * that makes replies UTF-8) and from the test harness's hd_utf8_strict
 * (a table of lead-byte ranges): it decodes each sequence to its code point
 * and refuses what RFC 3629 refuses: a stray continuation byte, a missing
 * one, a sequence longer than needed (overlong), a surrogate (U+D800 to
 * U+DFFF), anything beyond U+10FFFF.  Three independent readings of the
 * same rule: a bug must be in two of them to hide.
 */
#ifndef PC_FUZZ_UTIL_H
#define PC_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#define FZ_CHECK(cond, ...)                                                    \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz property violated (%s:%d): %s: ", __FILE__,  \
                    __LINE__, #cond);                                          \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            abort();                                                           \
        }                                                                      \
    } while (0)

static inline bool fz_utf8_strict(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = s[i], min;
        size_t more;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            more = 1, min = 0x80, c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            more = 2, min = 0x800, c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            more = 3, min = 0x10000, c &= 0x07;
        } else {
            return false; /* a continuation byte, or 0xf8..0xff */
        }
        if (more > n - i - 1)
            return false; /* cut short by the end */
        for (size_t k = 1; k <= more; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            c = c << 6 | (s[i + k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
        i += more + 1;
    }
    return true;
}

/* Every str in o, keys included, nested at any depth. */
static inline bool fz_strs_utf8(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_STR:
        return fz_utf8_strict((const uint8_t *)o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_ARRAY:
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (!fz_strs_utf8(&o->via.array.ptr[i]))
                return false;
        return true;
    case MSGPACK_OBJECT_MAP:
        for (uint32_t i = 0; i < o->via.map.size; i++)
            if (!fz_strs_utf8(&o->via.map.ptr[i].key) ||
                !fz_strs_utf8(&o->via.map.ptr[i].val))
                return false;
        return true;
    default:
        return true;
    }
}

/* The value of the str key k in map m, and how many times k appears. */
static inline const msgpack_object *fz_map_get(const msgpack_object *m,
                                               const char *k, size_t kn,
                                               unsigned *count)
{
    const msgpack_object *v = NULL;
    *count = 0;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *key = &m->via.map.ptr[i].key;
        if (key->type == MSGPACK_OBJECT_STR && key->via.str.size == kn &&
            memcmp(key->via.str.ptr, k, kn) == 0) {
            v = &m->via.map.ptr[i].val;
            ++*count;
        }
    }
    return v;
}

#endif /* PC_FUZZ_UTIL_H */
