/*
 * proto/limits.h - the limits every room shares, each defined once.
 *
 * No msgpack here: radix/ and blockpool/ include it.  Integers without
 * suffixes, so that the daemon's knob table can also print them as its
 * defaults and bounds.
 */
#ifndef PC_LIMITS_H
#define PC_LIMITS_H

#define PC_NS_MAX 256            /* bytes in a namespace                    */
#define PC_PAGE_TOKENS_MAX 1024  /* tokens per page (= per block)           */
#define PC_PAGE_TOKENS_DEFAULT 16

#endif /* PC_LIMITS_H */
