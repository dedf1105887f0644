#!/bin/sh
# install_smoke.sh BUILD_DIR CC [CFLAGS...]: `cmake --install` into a fresh
# prefix, then build and run a program against libprefixcache found only
# through the installed pkg-config file.  Proves the install rules, the
# relocatable .pc file and the installed headers work together.
set -eu
build=$1 cc=$2
shift 2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cmake --install "$build" --prefix "$dir/prefix" >/dev/null
cat > "$dir/use.c" <<'EOC'
#include <rpc/client.h>
#include <stdio.h>
int main(void)
{
    pc_client *c;
    /* nobody listens there: the call must time out, not hang or crash */
    if (pc_client_connect("ipc:///nonexistent-dir/pc.sock", 100, &c))
        return 1;
    int rc = pc_client_ping(c);
    printf("ping without a daemon: %s\n", pc_errname(rc));
    pc_client_close(c);
    return rc == PC_E_TIMEOUT ? 0 : 1;
}
EOC
PKG_CONFIG_PATH="$dir/prefix/lib/pkgconfig"
export PKG_CONFIG_PATH
# shellcheck disable=SC2046
"$cc" "$@" -o "$dir/use" "$dir/use.c" $(pkg-config --cflags --libs prefixcache)
"$dir/use"
