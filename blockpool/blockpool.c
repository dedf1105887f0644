/*
 * blockpool/blockpool.c - block ids, states and the free list.
 *
 *   state[]  (1 byte per block)        stack[] (free ids, LIFO)
 *   ┌───┬───┬───┬───┬───┬───┐          ┌───┬───┬───┬─────────────┐
 *   │ C │ F │ L │ F │ C │ F │          │ 5 │ 3 │ 1 │   (unused)  │
 *   └───┴───┴───┴───┴───┴───┘          └───┴───┴───┴─────────────┘
 *     0   1   2   3   4   5                        ▲ top = 3 = free count
 *
 * alloc pops, free pushes: O(1) each, and the block freed last (its pages
 * still warm in the engine's caches) is handed out first.  The state byte
 * makes a double free or a foreign id an error instead of a corrupt stack.
 * The bytes behind the ids belong to a backend (host shm, none, CUDA).
 */
#include "blockpool/backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- layout --------------------------------------------------------------- */

static const struct {
    const char *name;
    uint32_t bytes;
} dtypes[PC_DTYPE_COUNT] = {
    [PC_DTYPE_FP32] = {"fp32", 4}, [PC_DTYPE_FP16] = {"fp16", 2},
    [PC_DTYPE_BF16] = {"bf16", 2}, [PC_DTYPE_FP8] = {"fp8", 1},
    [PC_DTYPE_INT8] = {"int8", 1},
};

int pc_dtype_parse(const char *name, pc_dtype *out)
{
    for (int d = 0; name && out && d < PC_DTYPE_COUNT; d++)
        if (strcasecmp(name, dtypes[d].name) == 0) {
            *out = (pc_dtype)d;
            return 0;
        }
    return PC_E_INVAL;
}

const char *pc_dtype_name(pc_dtype d)
{
    return (unsigned)d < PC_DTYPE_COUNT ? dtypes[d].name : NULL;
}

uint32_t pc_dtype_bytes(pc_dtype d)
{
    return (unsigned)d < PC_DTYPE_COUNT ? dtypes[d].bytes : 0;
}

/* a * b into *r, false on 64-bit overflow */
static int mul_ok(uint64_t a, uint64_t b, uint64_t *r)
{
    return !__builtin_mul_overflow(a, b, r);
}

int pc_pool_layout_init(pc_pool_layout *l, uint32_t layers, uint32_t kv_heads,
                        uint32_t head_dim, uint32_t page_tokens, pc_dtype dtype)
{
    if (!l || !layers || !kv_heads || !head_dim || !page_tokens ||
        !pc_dtype_bytes(dtype))
        return PC_E_INVAL;
    if (page_tokens > PC_PAGE_TOKENS_MAX)
        return PC_E_RANGE;
    pc_pool_layout x = {layers, kv_heads, head_dim, page_tokens, dtype,
                        pc_dtype_bytes(dtype), 0, 0, 0};
    if (!mul_ok(x.dtype_bytes, (uint64_t)kv_heads * head_dim, &x.kv_bytes) ||
        !mul_ok(x.kv_bytes, page_tokens, &x.kv_bytes) ||
        !mul_ok(x.dtype_bytes * 2, (uint64_t)kv_heads * head_dim, &x.token_bytes) ||
        !mul_ok(x.token_bytes, layers, &x.token_bytes) ||
        !mul_ok(x.token_bytes, page_tokens, &x.block_bytes))
        return PC_E_RANGE;
    *l = x;
    return 0;
}

uint64_t pc_pool_layout_offset(const pc_pool_layout *l, uint32_t layer, int kv)
{
    if (!l || layer >= l->layers || (kv != 0 && kv != 1))
        return UINT64_MAX;
    return (2 * (uint64_t)layer + (uint64_t)kv) * l->kv_bytes;
}

/* ---- backends ------------------------------------------------------------- */

static int none_open(pc_pool *p, const pc_pool_config *cfg, uint64_t bytes)
{
    (void)p, (void)cfg, (void)bytes;
    return 0;
}

static void none_close(pc_pool *p) { (void)p; }

static const pc_pool_ops none_ops = {"none", none_open, none_close};

/* Registered backends: their memory comes from a room above this one
 * (gpu/), which blockpool/ must not include; pc_pool_ops adapts them. */
static const pc_pool_extern_ops *g_cuda_ext;

static int ext_open(pc_pool *p, const pc_pool_config *cfg, uint64_t bytes)
{
    p->ext = g_cuda_ext; /* the pool keeps these even if unregistered later */
    void *base = NULL, *state = NULL;
    int rc = p->ext->open(cfg, bytes, &base, &state);
    if (rc)
        return rc < 0 ? rc : PC_E_IO;
    p->base = base;
    p->bytes = bytes;
    p->ext_state = state;
    return 0;
}

static void ext_close(pc_pool *p)
{
    if (p->ext && p->base)
        p->ext->close(p->ext_state, p->base, p->bytes);
    p->base = NULL;
    p->ext_state = NULL;
}

static const pc_pool_ops cuda_ops = {"cuda", ext_open, ext_close};

int pc_pool_register_backend(pc_pool_backend b, const pc_pool_extern_ops *ops)
{
    if (b != PC_POOL_CUDA || (ops && (!ops->open || !ops->close)))
        return PC_E_INVAL;
    g_cuda_ext = ops;
    return 0;
}

void *pc_pool_backend_state(const pc_pool *p)
{
    return p && p->ext ? p->ext_state : NULL;
}

static const pc_pool_ops *backend_ops(pc_pool_backend b)
{
    switch (b) {
    case PC_POOL_HOST: return &pc_pool_host_ops;
    case PC_POOL_NONE: return &none_ops;
    case PC_POOL_CUDA: return g_cuda_ext ? &cuda_ops : NULL; /* registered? */
    }
    return NULL;
}

const char *pc_pool_backend_name(pc_pool_backend b)
{
    const pc_pool_ops *ops = backend_ops(b);
    return ops ? ops->name : b == PC_POOL_CUDA ? "cuda" : NULL;
}

/* ---- pool ----------------------------------------------------------------- */

int pc_pool_create(const pc_pool_config *cfg, pc_pool **out)
{
    if (!out)
        return PC_E_INVAL;
    *out = NULL;
    if (!cfg || !cfg->layout.block_bytes || !backend_ops(cfg->backend))
        return PC_E_INVAL;
    /* Re-derive the layout: never trust a hand-filled struct. */
    pc_pool_layout l;
    const pc_pool_layout *c = &cfg->layout;
    int rc = pc_pool_layout_init(&l, c->layers, c->kv_heads, c->head_dim,
                                 c->page_tokens, c->dtype);
    if (rc)
        return rc;
    if (l.block_bytes != c->block_bytes)
        return PC_E_INVAL;
    uint64_t blocks = cfg->capacity_blocks
                          ? cfg->capacity_blocks
                          : cfg->capacity_bytes / l.block_bytes;
    uint64_t bytes;
    if (blocks < 2 || blocks > PC_POOL_MAX_BLOCKS ||
        !mul_ok(blocks, l.block_bytes, &bytes))
        return PC_E_RANGE;

    pc_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return PC_E_NOMEM;
    p->layout = l;
    p->backend = cfg->backend;
    p->ops = backend_ops(cfg->backend);
    p->capacity = (uint32_t)blocks;
    p->fd = -1;
    p->state = malloc(blocks); /* written now: no page faults in use */
    p->stack = malloc(blocks * sizeof(uint32_t));
    if (!p->state || !p->stack) {
        pc_pool_destroy(p);
        return PC_E_NOMEM;
    }
    memset(p->state, PC_BLOCK_FREE, blocks); /* PC_BLOCK_FREE is 0: */
    for (size_t i = 0; i < blocks; i += 4096) /* calloc-proof touch */
        ((volatile uint8_t *)p->state)[i] = PC_BLOCK_FREE;
    /* Block 0 on top: a fresh pool hands out ids in ascending order. */
    for (uint32_t i = 0; i < p->capacity; i++)
        p->stack[i] = p->capacity - 1 - i;
    p->top = p->capacity;
    if ((rc = p->ops->open(p, cfg, bytes))) {
        int e = errno; /* the OS's cause, kept for the caller */
        pc_pool_destroy(p);
        errno = e;
        return rc;
    }
    *out = p;
    return 0;
}

void pc_pool_destroy(pc_pool *p)
{
    if (!p)
        return;
    if (p->ops)
        p->ops->close(p);
    free(p->state);
    free(p->stack);
    free(p);
}

const pc_pool_layout *pc_pool_layout_get(const pc_pool *p)
{
    return p ? &p->layout : NULL;
}

pc_pool_backend pc_pool_backend_get(const pc_pool *p)
{
    return p ? p->backend : PC_POOL_NONE;
}
uint32_t pc_pool_capacity(const pc_pool *p) { return p ? p->capacity : 0; }

int pc_pool_alloc(pc_pool *p, uint32_t n, uint32_t *ids)
{
    if (!p || (n && !ids))
        return PC_E_INVAL;
    if (n > p->top)
        return PC_E_NOSPACE;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = p->stack[--p->top];
        p->state[id] = PC_BLOCK_LEASED;
        ids[i] = id;
    }
    p->n_leased += n;
    p->allocs += n;
    return 0;
}

int pc_pool_cache(pc_pool *p, uint32_t id)
{
    if (!p)
        return PC_E_INVAL;
    if (id >= p->capacity)
        return PC_E_RANGE;
    if (p->state[id] != PC_BLOCK_LEASED)
        return PC_E_STATE;
    p->state[id] = PC_BLOCK_CACHED;
    p->n_leased--;
    p->n_cached++;
    return 0;
}

int pc_pool_free(pc_pool *p, uint32_t id)
{
    if (!p)
        return PC_E_INVAL;
    if (id >= p->capacity)
        return PC_E_RANGE;
    switch (p->state[id]) {
    case PC_BLOCK_LEASED: p->n_leased--; break;
    case PC_BLOCK_CACHED: p->n_cached--; break;
    default: return PC_E_STATE; /* double free */
    }
    p->state[id] = PC_BLOCK_FREE;
    p->stack[p->top++] = id;
    p->frees++;
    return 0;
}

int pc_pool_state(const pc_pool *p, uint32_t id, pc_block_state *out)
{
    if (!p || !out)
        return PC_E_INVAL;
    if (id >= p->capacity)
        return PC_E_RANGE;
    *out = (pc_block_state)p->state[id];
    return 0;
}

void pc_pool_stats_get(const pc_pool *p, pc_pool_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof(*out));
    if (!p)
        return;
    out->capacity = p->capacity;
    out->free = p->top;
    out->leased = p->n_leased;
    out->cached = p->n_cached;
    out->allocs = p->allocs;
    out->frees = p->frees;
    out->bytes = p->bytes;
}

void pc_pool_stats_visit(const pc_pool *p, pc_stat_fn fn, void *ctx)
{
    pc_pool_stats s;
    pc_pool_stats_get(p, &s);
    /* Block counts are gauges under pool.blocks.*; transitions and sizes
     * directly under pool.* */
    fn(ctx, "pool.blocks.capacity", s.capacity);
    fn(ctx, "pool.blocks.free", s.free);
    fn(ctx, "pool.blocks.leased", s.leased);
    fn(ctx, "pool.blocks.cached", s.cached);
    fn(ctx, "pool.allocs", s.allocs);
    fn(ctx, "pool.frees", s.frees);
    fn(ctx, "pool.bytes", s.bytes);
    fn(ctx, "pool.block_bytes", p ? p->layout.block_bytes : 0);
}

#define CHECK(cond, ...) PC_CHECK_OR_OUT("pc_pool_check", cond, __VA_ARGS__)

int pc_pool_check(const pc_pool *p)
{
    int rc = 0;
    uint64_t n[3] = {0};
    uint8_t *on_stack = NULL;
    if (!p)
        return PC_E_INVAL;
    CHECK(p->top <= p->capacity, "free list holds %u > capacity %u", p->top,
          p->capacity);
    for (uint32_t i = 0; i < p->capacity; i++) {
        CHECK(p->state[i] <= PC_BLOCK_CACHED, "block %u bad state %u", i,
              p->state[i]);
        n[p->state[i]]++;
    }
    CHECK(n[PC_BLOCK_FREE] == p->top, "%llu FREE blocks, free list holds %u",
          (unsigned long long)n[PC_BLOCK_FREE], p->top);
    CHECK(n[PC_BLOCK_LEASED] == p->n_leased, "leased count %llu, states %llu",
          (unsigned long long)p->n_leased, (unsigned long long)n[PC_BLOCK_LEASED]);
    CHECK(n[PC_BLOCK_CACHED] == p->n_cached, "cached count %llu, states %llu",
          (unsigned long long)p->n_cached, (unsigned long long)n[PC_BLOCK_CACHED]);
    on_stack = calloc(p->capacity, 1);
    CHECK(on_stack, "check out of memory");
    for (uint32_t i = 0; i < p->top; i++) {
        uint32_t id = p->stack[i];
        CHECK(id < p->capacity, "free list entry %u out of range", id);
        CHECK(p->state[id] == PC_BLOCK_FREE, "free list holds non-free %u", id);
        CHECK(!on_stack[id], "block %u twice on the free list", id);
        on_stack[id] = 1;
    }
    CHECK(p->backend != PC_POOL_HOST ||
              (p->base && p->fd >= 0 &&
               p->bytes == (uint64_t)p->capacity * p->layout.block_bytes),
          "host backend not mapped as sized");
out:
    free(on_stack);
    return rc;
}

void *pc_pool_base(const pc_pool *p) { return p ? p->base : NULL; }

void *pc_pool_block_ptr(const pc_pool *p, uint32_t id)
{
    if (!p || !p->base || id >= p->capacity)
        return NULL;
    return (uint8_t *)p->base + (uint64_t)id * p->layout.block_bytes;
}
