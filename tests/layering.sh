#!/bin/sh
# layering.sh SOURCE_DIR: the rooms' one-way dependencies, checked on the
# sources (docs/architecture.md):
#   - each room includes only what its allow-list below names (radix/ and
#     blockpool/ never each other, nor msgpack);
#   - rpc/ and daemon/ reach the tree and the pool only through cache/: no
#     radix/ header, no cache/inspect.h, no pc_radix_* call, no
#     pc_cache_tree/pc_cache_pool; of gpu/, only the client library
#     (rpc/client.c) includes gpu/dev.h, to import a cuda pool's handle as
#     it maps a host pool through blockpool/;
#   - radix/ and blockpool/ include no msgpack (proto/errors.h, not proto.h);
#   - nothing includes daemon/ but daemon/ itself (and its tests);
#   - no file outside proto/ spells a request or reply key of the wire
#     table in a pack or get call (they go through proto/wire.h), save the
#     tests that build malformed messages on purpose.
set -u
src=$1
fail=0
bad() { echo "layering: $*"; fail=1; }

for f in "$src"/rpc/*.[ch] "$src"/daemon/*.[ch]; do
    grep -Hn '#include "radix/\|#include "cache/inspect.h"' "$f" && bad "$f reaches past cache/"
    grep -Hn 'pc_radix_[a-z_]*(\|pc_cache_tree(\|pc_cache_pool(' "$f" && bad "$f calls past cache/"
    case $f in */rpc/client.c) ;; *)
        grep -Hn '#include "gpu/' "$f" && bad "$f reaches gpu/ (only the client may, for an import)" ;;
    esac
done
# What each room may include of the project (docs/architecture.md):
# "room: allowed prefixes".  Anything else is a layering error.
allow() {
    case $1 in
    proto)     echo "proto/" ;;
    radix)     echo "radix/ proto/errors.h proto/limits.h proto/stats.h proto/heap.h proto/hashtab.h" ;;
    blockpool) echo "blockpool/ proto/errors.h proto/limits.h proto/stats.h" ;;
    gpu)       echo "gpu/ proto/errors.h proto/limits.h blockpool/blockpool.h" ;;
    cache)     echo "cache/ radix/radix.h blockpool/blockpool.h gpu/dev.h gpu/pool.h proto/errors.h proto/limits.h proto/stats.h proto/heap.h proto/hashtab.h proto/pagehash.h" ;;
    rpc)       echo "rpc/ cache/cache.h blockpool/blockpool.h gpu/dev.h proto/" ;;
    daemon)    echo "daemon/ rpc/ cache/cache.h proto/" ;;
    esac
}
for room in proto radix blockpool gpu cache rpc daemon; do
    ok=$(allow $room)
    for f in "$src/$room"/*.[ch] "$src/$room"/*.cu; do
        [ -f "$f" ] || continue
        for inc in $(sed -n 's/^ *# *include "\([^"]*\)".*/\1/p' "$f"); do
            good=0
            for a in $ok; do
                case $inc in "$a"*) good=1 ;; esac
            done
            [ $good = 1 ] || bad "$f includes $inc ($room/ may include: $ok)"
        done
    done
done
for f in "$src"/radix/*.[ch] "$src"/blockpool/*.[ch] "$src"/cache/*.[ch]; do
    grep -Hn '#include <msgpack.h>' "$f" && bad "$f sees msgpack"
done
for f in $(find "$src" -name '*.[ch]' -not -path "$src/daemon/*" -not -path "$src/tests/*" -not -path "$src/build/*"); do
    grep -Hn '#include "daemon/' "$f" && bad "$f includes daemon/"
done
keys=$(sed -n 's/^ *F([a-z_]*, [a-z_]*, "\([a-z_]*\)".*/\1/p' "$src/proto/wire.h" | sort -u | tr '\n' '|' | sed 's/|$//')
[ -n "$keys" ] || bad "no keys read from proto/wire.h"
for f in "$src"/rpc/*.c "$src"/daemon/*.c "$src"/bench/*.c "$src"/bench/*/*.c "$src"/tests/harness/*.c; do
    grep -HnE "pc_(pack_kv_[a-z0-9]+|mp_get[a-z0-9_]*)\([^,]*, *\"($keys|op|id|status|error)\"|(pc_pack_cstr|pc_pack_str|msgpack_pack_str_body)\([^,]*, *\"($keys|op|id|status|error)\"" "$f" \
        && bad "$f spells a wire key"
done
[ $fail = 0 ] && echo "layering: ok"
exit $fail
