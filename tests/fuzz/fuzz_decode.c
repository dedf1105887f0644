/*
 * tests/fuzz/fuzz_decode.c - libFuzzer target: the request decoder.
 *
 * Each input is one request payload, decoded by pc_wire_decode_request
 * with the default limits (16 MiB, 2^20 tokens).  Properties:
 *   - it returns 0 or one of the codes PROTOCOL.md section 4 names
 *     (BADMSG, BADOP, TOOBIG, INVAL, NOMEM), with a reason in d.err, and
 *     op -1 or a known op;
 *   - a decoded request re-encodes (pc_wire_encode_request) into a payload
 *     that decodes again, to the same op and id;
 *   - that payload is a fixed point: encoding the second decode gives the
 *     same bytes (nothing is lost or changed by a decode after an encode).
 * Any violation aborts, and libFuzzer keeps the input.
 */
#include "proto/proto.h"
#include "tests/fuzz/fuzz_util.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static pc_decoder g_d1, g_d2;
static msgpack_sbuffer g_sb1, g_sb2;
static int g_init;

static void encode(msgpack_sbuffer *sb, const pc_request *r)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    pc_wire_encode_request(&pk, r->op, r->id, &r->u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_init) { /* reused input after input, as the server reuses its own */
        pc_decoder_init(&g_d1);
        pc_decoder_init(&g_d2);
        msgpack_sbuffer_init(&g_sb1);
        msgpack_sbuffer_init(&g_sb2);
        g_init = 1;
    }
    const pc_proto_limits lim = {PC_PROTO_MAX_MSG_DEFAULT,
                                 PC_PROTO_MAX_TOKENS_DEFAULT};
    pc_request r1, r2;
    int rc = pc_wire_decode_request(&g_d1, data, size, &lim, &r1);
    FZ_CHECK(rc == 0 || rc == PC_E_BADMSG || rc == PC_E_BADOP ||
                 rc == PC_E_TOOBIG || rc == PC_E_INVAL || rc == PC_E_NOMEM,
             "decode returned %d", rc);
    FZ_CHECK(r1.op >= -1 && r1.op < PC_OP_COUNT, "op %d", r1.op);
    if (rc) {
        FZ_CHECK(g_d1.err[0] != 0, "code %d without a reason", rc);
        FZ_CHECK(memchr(g_d1.err, 0, sizeof(g_d1.err)) != NULL, "reason not terminated");
        return 0;
    }
    FZ_CHECK(r1.op >= 0, "decoded without an op");

    encode(&g_sb1, &r1);
    rc = pc_wire_decode_request(&g_d2, g_sb1.data, g_sb1.size, &lim, &r2);
    FZ_CHECK(rc == 0, "op %s id %llu: the re-encoded request (%zu bytes) "
             "does not decode: %d (%s)", pc_op_name(r1.op),
             (unsigned long long)r1.id, g_sb1.size, rc, g_d2.err);
    FZ_CHECK(r2.op == r1.op && r2.id == r1.id,
             "op/id %d/%llu came back as %d/%llu", r1.op,
             (unsigned long long)r1.id, r2.op, (unsigned long long)r2.id);
    FZ_CHECK(r2.u.lookup.has == r1.u.lookup.has, /* `has` heads every struct */
             "op %s: presence bits %#x came back as %#x", pc_op_name(r1.op),
             r1.u.lookup.has, r2.u.lookup.has);
    encode(&g_sb2, &r2);
    FZ_CHECK(g_sb2.size == g_sb1.size &&
                 memcmp(g_sb2.data, g_sb1.data, g_sb1.size) == 0,
             "op %s: encode(decode(encode(x))) differs from encode(x) "
             "(%zu vs %zu bytes)", pc_op_name(r1.op), g_sb2.size, g_sb1.size);
    return 0;
}
