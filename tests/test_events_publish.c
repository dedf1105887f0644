/*
 * tests/test_events_publish.c - rpc/events.c in one process: a cache, the
 * publisher (by-block: its thread hashes the pool's pages) and a SUB socket
 * that decodes every batch.  Inserts long enough to be split into several
 * queue records (each part chains on from the last block of the one before)
 * and of 16-token pages (pagehash.c's unrolled step, on the events thread),
 * then an eviction of everything: every hash and parent must be the chain
 * pc_page_hash_chain computes over the prompt, and the REMOVED pages exactly
 * the STORED ones.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <zmq.h>

#include "cache/cache.h"
#include "proto/pagehash.h"
#include "rpc/events.h"
#include "tests/harness/prng.h"

typedef struct got {
    uint64_t *stored, *parent, *removed; /* in order */
    size_t nstored, nremoved, nparent;
    size_t cstored, cremoved, cparent;    /* their capacities */
    size_t tokens, cleared;
    bool first_parent_nil;
} got;

static const msgpack_object *field(const msgpack_object *m, const char *k)
{
    cr_assert_eq(m->type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(k) &&
            !memcmp(kv->key.via.str.ptr, k, strlen(k)))
            return &kv->val;
    }
    cr_assert_fail("no field %s", k);
    return NULL;
}

static void push(uint64_t **v, size_t *n, size_t *cap, uint64_t x)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 1024;
        *v = realloc(*v, *cap * sizeof(**v));
        cr_assert_not_null(*v);
    }
    (*v)[(*n)++] = x;
}

/* One batch's events into g. */
static void take(got *g, const void *payload, size_t len)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, payload, len, NULL), MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *b = &u.data;
    cr_assert_eq(b->type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(b->via.array.size, 3);
    const msgpack_object *evs = &b->via.array.ptr[1];
    for (uint32_t i = 0; i < evs->via.array.size; i++) {
        const msgpack_object *ev = &evs->via.array.ptr[i];
        const msgpack_object *t = field(ev, "type");
        if (t->via.str.size == 16 && !memcmp(t->via.str.ptr, "AllBlocksCleared", 16)) {
            g->cleared++;
            continue;
        }
        const msgpack_object *h = field(ev, "block_hashes");
        bool stored = t->via.str.size == 11 && !memcmp(t->via.str.ptr, "BlockStored", 11);
        for (uint32_t k = 0; k < h->via.array.size; k++) {
            if (stored)
                push(&g->stored, &g->nstored, &g->cstored, h->via.array.ptr[k].via.u64);
            else
                push(&g->removed, &g->nremoved, &g->cremoved, h->via.array.ptr[k].via.u64);
        }
        if (stored) {
            const msgpack_object *p = field(ev, "parent_block_hash");
            if (g->nstored == h->via.array.size) /* the first STORED */
                g->first_parent_nil = p->type == MSGPACK_OBJECT_NIL;
            else
                push(&g->parent, &g->nparent, &g->cparent, p->via.u64);
            g->tokens += field(ev, "token_ids")->via.array.size;
        }
    }
    msgpack_unpacked_destroy(&u);
}

static int cmp64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A prompt of pages x P tokens inserted whole into an empty cache, then
 * evicted: the events against the chain. */
static void run(uint32_t P, size_t pages, int splits_at_least)
{
    char dir[] = "/tmp/pc-evpub-XXXXXX", ep[PATH_MAX];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(ep, sizeof(ep), "ipc://%s/ev.sock", dir);
    pc_cache_config cfg;
    pc_cache_config_defaults(&cfg);
    cr_assert_eq(pc_pool_layout_init(&cfg.pool.layout, 1, 1, 8, P, PC_DTYPE_FP16), 0);
    cfg.pool.backend = PC_POOL_NONE;
    cfg.pool.capacity_blocks = pages + 8;
    cfg.max_blocks_per_lease = (uint32_t)pages;
    cfg.low_watermark = 0;
    cfg.high_watermark = 0;
    pc_cache *c = NULL;
    cr_assert_eq(pc_cache_create(&cfg, &c), 0, "%s", pc_cache_create_why());
    pc_rpc_events *e = NULL;
    pc_rpc_events_config ec = {.endpoint = ep, .topic = "t", .replay_endpoint = "",
                               .buffer = 1, .interval_ms = 0,
                               .format = PC_KV_EVENTS_MAP, .dp_rank = -1};
    cr_assert_eq(pc_rpc_events_create(&ec, &e), 0);
    pc_rpc_events_attach(e, c);
    void *zc = zmq_ctx_new(), *sub = zmq_socket(zc, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(sub, ZMQ_RCVHWM, &zero, sizeof(zero));
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    cr_assert_eq(zmq_connect(sub, ep), 0);

    /* the subscription takes a moment: a one-page prompt in namespace "w"
     * until a batch comes (then evicted, and its events set aside) */
    uint64_t s = 1000 + P;
    uint32_t *tok = calloc(pages * P, sizeof(*tok)), *blocks = malloc(pages * 4),
             *fresh = malloc(pages * 4);
    cr_assert(tok && blocks && fresh);
    zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};
    bool up = false;
    for (int k = 0; k < 200 && !up; k++) {
        tok[0] = (uint32_t)k;
        pc_lookup_result r;
        pc_insert_result ir;
        cr_assert_eq(pc_cache_lookup_alloc(c, "w", 1, tok, P, 0, 0, blocks, fresh, &r), 0);
        cr_assert_eq(pc_cache_insert(c, "w", 1, tok, P, fresh, r.lease, NULL, &ir), 0);
        cr_assert_eq(pc_cache_release(c, r.lease), 0);
        pc_cache_evict(c, SIZE_MAX);
        pc_rpc_events_tick(e);
        cr_assert_eq(pc_rpc_events_flush(e), 0);
        up = zmq_poll(&it, 1, 20) > 0;
    }
    cr_assert(up, "the subscriber never got a batch");
    for (;;) { /* drop what the warm-up published */
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_poll(&it, 1, 50) <= 0) {
            zmq_msg_close(&m);
            break;
        }
        cr_assert_geq(zmq_msg_recv(&m, sub, 0), 0);
        zmq_msg_close(&m);
    }

    for (size_t i = 0; i < pages * P; i++)
        tok[i] = (uint32_t)test_rng_next(&s); /* every bit of an id counts */
    pc_lookup_result r;
    pc_insert_result ir;
    cr_assert_eq(pc_cache_lookup_alloc(c, "ns", 2, tok, pages * P, 0, 0, blocks,
                                       fresh, &r), 0);
    cr_assert_eq(r.alloc_status, 0);
    cr_assert_eq(r.alloc_n, pages);
    cr_assert_eq(pc_cache_insert(c, "ns", 2, tok, pages * P, fresh, r.lease, NULL, &ir), 0);
    cr_assert_eq(pc_cache_release(c, r.lease), 0);
    pc_rpc_events_tick(e);
    cr_assert_eq(pc_cache_evict(c, SIZE_MAX), pages);
    pc_rpc_events_tick(e);
    cr_assert_eq(pc_rpc_events_flush(e), 0);
    cr_assert_eq(pc_cache_check(c), 0);

    got g = {0};
    while (zmq_poll(&it, 1, 200) > 0) {
        zmq_msg_t m[3];
        for (int k = 0; k < 3; k++) {
            zmq_msg_init(&m[k]);
            cr_assert_geq(zmq_msg_recv(&m[k], sub, 0), 0);
        }
        take(&g, zmq_msg_data(&m[2]), zmq_msg_size(&m[2]));
        for (int k = 0; k < 3; k++)
            zmq_msg_close(&m[k]);
    }
    pc_page_hash *h = malloc(pages * sizeof(*h));
    cr_assert_not_null(h);
    pc_page_hash_chain("ns", 2, tok, pages, P, h);
    cr_assert_eq(g.nstored, pages);
    cr_assert_eq(g.tokens, pages * P);
    cr_assert(g.first_parent_nil);
    /* every STORED after the first (a split part) chains on from the last
     * page before it */
    cr_assert_geq(g.nparent, (size_t)splits_at_least, "%zu STORED parts", g.nparent + 1);
    for (size_t i = 0; i < pages; i++)
        cr_assert_eq(g.stored[i], h[i].lo, "P %u: page %zu's hash", P, i);
    size_t k = 0;
    for (size_t i = 1; i < pages && k < g.nparent; i++)
        if (g.parent[k] == h[i - 1].lo)
            k++;
    cr_assert_eq(k, g.nparent, "a part's parent is not the page before it");
    cr_assert_eq(g.nremoved, pages);
    qsort(g.removed, pages, 8, cmp64);
    qsort(g.stored, pages, 8, cmp64);
    cr_assert_arr_eq(g.removed, g.stored, pages * 8);
    pc_rpc_events_stats st;
    pc_rpc_events_stats_get(e, &st);
    cr_assert_eq(st.lost_pages, 0);

    zmq_close(sub);
    zmq_ctx_term(zc);
    pc_rpc_events_attach(e, NULL);
    pc_rpc_events_destroy(e);
    pc_cache_destroy(c);
    char sock[PATH_MAX];
    snprintf(sock, sizeof(sock), "%s/ev.sock", dir);
    unlink(sock);
    rmdir(dir);
    free(h);
    free(tok);
    free(blocks);
    free(fresh);
    free(g.stored);
    free(g.removed);
    free(g.parent);
}

/* 16-token pages: the unrolled step; 8,000 pages pass a queue record's
 * 512 KiB (7,709 pages of 16 tokens), so the insert goes as two parts. */
Test(events_publish, long_insert_of_16_token_pages_is_split_and_chained)
{
    run(16, 8000, 1);
}

/* Other page sizes take the generic step; 1-token pages split at 65,530. */
Test(events_publish, other_page_sizes)
{
    run(5, 300, 0);
    run(1, 70000, 1);
}
