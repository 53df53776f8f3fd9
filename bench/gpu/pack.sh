#!/usr/bin/env bash
# Fills the git-ignored .device/ folder that the device tool carries to the GPU machine, which has
# no network: the llama.cpp pin as a git bundle and a minimal sysroot for the libraries that
# machine lacks (cpp-httplib, xxhash, hiredis; taken from this machine's Debian 12 packages).
#
#   bench/gpu/pack.sh [BUNDLE]   # BUNDLE: node-llama-cpp's llama/gitRelease.bundle
#
# Layout: .device/gitRelease.bundle, .device/sysroot/{include,lib,lib/pkgconfig}. The .pc files
# use ${pcfiledir}, so the sysroot works wherever it lands. cpp-httplib is Debian's compiled
# (split) build: its shared library goes along with the brotli libraries it needs, found at run
# time through the build RPATH (and LD_LIBRARY_PATH in run.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUNDLE=${1:-$HOME/.cache/kvstash/package/llama/gitRelease.bundle}
[ -f "$BUNDLE" ] || { echo "pack.sh: no bundle at $BUNDLE" >&2; exit 1; }
D=.device
rm -rf "$D"
mkdir -p "$D/sysroot/include" "$D/sysroot/lib/pkgconfig"
cp "$BUNDLE" "$D/gitRelease.bundle"
INC=/usr/include
LIB=/usr/lib/x86_64-linux-gnu
S=$D/sysroot
# headers
cp "$INC/httplib.h" "$INC/xxhash.h" "$INC/xxh3.h" "$S/include/"
[ -f "$INC/xxh_x86dispatch.h" ] && cp "$INC/xxh_x86dispatch.h" "$S/include/"
cp -r "$INC/hiredis" "$S/include/"
cp -r "$INC/brotli" "$S/include/"          # httplib.h includes them (CPPHTTPLIB_BROTLI_SUPPORT)
cp "$INC/zlib.h" "$INC/zconf.h" "$S/include/"
# libraries
cp "$LIB/libxxhash.a" "$LIB/libhiredis.a" "$S/lib/"
cp -P "$LIB"/libcpp-httplib.so* "$S/lib/"
cp "$(readlink -f "$LIB/libcpp-httplib.so")" "$S/lib/"
for b in brotlicommon brotlidec brotlienc; do
  cp "$(readlink -f "$LIB/lib$b.so.1")" "$S/lib/lib$b.so.1"
done
# OpenSSL headers and libcrypto (the fleet key), used where the machine has none
cp -r "$INC/openssl" "$S/include/"
cp -r "$INC/x86_64-linux-gnu/openssl/." "$S/include/openssl/"
cp "$(readlink -f "$LIB/libcrypto.so.3")" "$S/lib/libcrypto.so.3"
ln -sf libcrypto.so.3 "$S/lib/libcrypto.so"
# redis-server and the libraries it needs, for the remotekey step on a machine without Redis
mkdir -p "$D/redis"
cp "$(readlink -f /usr/bin/redis-server)" "$D/redis/redis-server"
for l in $(ldd /usr/bin/redis-server | awk '$3 ~ /^\// {print $3}' | grep -v -E '/libc\.so|/libm\.so|/ld-linux|/libstdc|/libgcc_s'); do
  cp -L "$l" "$D/redis/"
done
# pkg-config files, relocatable
cat > "$S/lib/pkgconfig/libxxhash.pc" <<'PC'
prefix=${pcfiledir}/../..
includedir=${prefix}/include
libdir=${prefix}/lib

Name: xxhash
Description: extremely fast hash algorithm (Debian 12 build, static)
Version: 0.8.1
Libs: -L${libdir} -lxxhash
Cflags: -I${includedir}
PC
cat > "$S/lib/pkgconfig/hiredis.pc" <<'PC'
prefix=${pcfiledir}/../..
includedir=${prefix}/include/hiredis
libdir=${prefix}/lib

Name: hiredis
Description: Minimalistic C client library for Redis (Debian 12 build, static)
Version: 0.14.1
Libs: -L${libdir} -lhiredis
Cflags: -I${includedir} -D_FILE_OFFSET_BITS=64
PC
cat > "$S/lib/pkgconfig/cpp-httplib.pc" <<'PC'
prefix=${pcfiledir}/../..
includedir=${prefix}/include
libdir=${prefix}/lib

Name: cpp-httplib
Description: A C++ HTTP/HTTPS server and client library (Debian 12 build)
Version: 0.11.4
Libs: -L${libdir} -lcpp-httplib -Wl,-rpath,${libdir}
Libs.private: -pthread
Cflags: -I${includedir} -DCPPHTTPLIB_OPENSSL_SUPPORT -DCPPHTTPLIB_ZLIB_SUPPORT -DCPPHTTPLIB_BROTLI_SUPPORT
PC
du -sh "$D"
# The carry limit (64 MiB) holds the tracked tree as well.
[ "$(du -sb "$D" | cut -f1)" -lt $((56 * 1024 * 1024)) ] || { echo "pack.sh: .device too big" >&2; exit 1; }
