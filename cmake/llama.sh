#!/usr/bin/env bash
# Obtain and build the pinned llama.cpp, caching both outside the repo.
#
# The pin is the llama.cpp release bundled in the npm package node-llama-cpp@3.22.1
# (llama/gitRelease.bundle is a git bundle). It is fetched with `npm pack` once, cloned into
# $KVSTASH_CACHE/llama.cpp, built and installed into $KVSTASH_CACHE/llama-<commit>-<backend>.
# A re-run with the install present does nothing. Prints the install prefix on the last line.
#
#   cmake/llama.sh [--src DIR] [--cuda]
#     --src DIR   build the user's own llama.cpp checkout instead of the pinned one
#     --cuda      build ggml-cuda (needs nvcc); also KVSTASH_CUDA=1
#   KVSTASH_LLAMA_CMAKE_ARGS adds CMake arguments (e.g. -DCMAKE_CUDA_ARCHITECTURES=90).
#   KVSTASH_LLAMA_BUNDLE=FILE clones the pin from a local copy of node-llama-cpp's
#     llama/gitRelease.bundle instead of `npm pack` (machines without registry access).
# The install holds libllama, llama.cpp's common library (chat templates, tool-call parsing,
# grammars; headers under include/llama-common), bin/llama-server, the vocab files and the chat
# templates of models/templates.
set -euo pipefail

NODE_LLAMA_CPP_VERSION=3.22.1
CACHE=${KVSTASH_CACHE:-$HOME/.cache/kvstash}
SRC=""
CUDA=${KVSTASH_CUDA:-0}
while [ $# -gt 0 ]; do
  case "$1" in
    --src) SRC=$2; shift 2 ;;
    --cuda) CUDA=1; shift ;;
    *) echo "llama.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$CACHE"

if [ -z "$SRC" ]; then
  SRC=$CACHE/llama.cpp
  if [ ! -d "$SRC/.git" ] && [ -n "${KVSTASH_LLAMA_BUNDLE:-}" ]; then
    [ -f "$KVSTASH_LLAMA_BUNDLE" ] ||
      { echo "kvstash: KVSTASH_LLAMA_BUNDLE=$KVSTASH_LLAMA_BUNDLE is not a file" >&2; exit 1; }
    echo "kvstash: cloning llama.cpp from $KVSTASH_LLAMA_BUNDLE" >&2
    rm -rf "$SRC.tmp"
    git clone -q "$KVSTASH_LLAMA_BUNDLE" "$SRC.tmp"
    mv "$SRC.tmp" "$SRC"
  fi
  if [ ! -d "$SRC/.git" ]; then
    echo "kvstash: fetching llama.cpp from npm package node-llama-cpp@$NODE_LLAMA_CPP_VERSION" >&2
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" >/dev/null &&
      tar xzf node-llama-cpp-*.tgz package/llama/gitRelease.bundle)
    rm -rf "$SRC.tmp"
    git clone -q "$tmp/package/llama/gitRelease.bundle" "$SRC.tmp"
    mv "$SRC.tmp" "$SRC"
    rm -rf "$tmp"
  fi
fi
SRC=$(cd "$SRC" && pwd)
COMMIT=$(git -C "$SRC" rev-parse --short=12 HEAD 2>/dev/null || echo nogit)
# kvstash's patches (cmake/patches/*.patch, each documented in its header) add entry points the
# public API lacks. They are applied as one series, in name order, and their hash names the
# install, so a changed patch builds anew. A marker in the clone's .git records the series
# applied: a re-run with the same series does nothing; on kvstash's own clone another series
# (an older checkout of kvstash) is undone with `git checkout` first, since later patches may
# touch the lines an earlier one did and cannot be checked one by one.
PATCHES=$(cd "$(dirname "$0")/patches" && pwd)
PATCH_ID=p$(cat "$PATCHES"/*.patch | sha256sum | cut -c1-8)
MARKER=$SRC/.git/kvstash-patches
if [ "$(cat "$MARKER" 2>/dev/null)" != "$PATCH_ID" ]; then
  if ! git -C "$SRC" diff --quiet; then
    if [ "$SRC" = "$CACHE/llama.cpp" ]; then
      echo "kvstash: undoing another patch series in $SRC" >&2
      git -C "$SRC" checkout -q -- .
    else
      echo "kvstash: $SRC has local changes; apply cmake/patches/*.patch to a clean tree" >&2
      exit 1
    fi
  fi
  for p in "$PATCHES"/*.patch; do
    git -C "$SRC" apply "$p" ||
      { echo "kvstash: cannot apply $(basename "$p") to $SRC (another llama.cpp version?)" >&2; exit 1; }
    echo "kvstash: applied $(basename "$p") to $SRC" >&2
  done
  echo "$PATCH_ID" >"$MARKER"
fi
BACKEND=cpu
if [ "$CUDA" = 1 ]; then
  command -v nvcc >/dev/null || { echo "kvstash: --cuda asked for but nvcc is not on PATH" >&2; exit 1; }
  BACKEND=cuda
fi
PREFIX=$CACHE/llama-$COMMIT-$PATCH_ID-$BACKEND
if [ -f "$PREFIX/.complete" ] && [ "$SRC" = "$(cat "$PREFIX/.complete")" ] &&
  [ -x "$PREFIX/bin/llama-server" ] && [ -f "$PREFIX/lib/libllama-common-base.a" ] &&
  [ -f "$PREFIX/include/llama-common/chat.h" ] && [ -d "$PREFIX/share/kvstash/templates" ]; then
  echo "$PREFIX"; exit 0
fi

BUILD=$CACHE/build-$COMMIT-$PATCH_ID-$BACKEND
echo "kvstash: building llama.cpp $COMMIT ($BACKEND) in $BUILD (first build takes minutes)" >&2
# llama-server is built from the same tree and flags: `kvstash bench` runs it as the peer. Only the
# targets needed are built (the other tools are configured but neither built nor installed); the
# web UI is left out (its prebuilt assets would be downloaded).
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_COMMON=ON \
  -DLLAMA_TOOLS_INSTALL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=ON -DGGML_OPENMP=ON \
  -DGGML_CUDA=$([ "$CUDA" = 1 ] && echo ON || echo OFF) ${KVSTASH_LLAMA_CMAKE_ARGS:-} \
  -DCMAKE_INSTALL_PREFIX="$PREFIX" >&2
cmake --build "$BUILD" -j"$(nproc)" --target llama llama-common llama-server >&2
cmake --install "$BUILD" >&2
# llama.cpp installs libllama-common.a but neither its headers nor the small library it links
# (build info): kvstash renders chat templates and parses tool calls with it, so install both.
# The headers are pimpl'd (common_json hides the vendored JSON library), so kvstash's own JSON
# library never meets llama.cpp's.
rm -rf "$PREFIX/include/llama-common"
mkdir -p "$PREFIX/include/llama-common/jinja"
cp "$SRC"/common/*.h "$PREFIX/include/llama-common/"
cp "$SRC"/common/jinja/*.h "$PREFIX/include/llama-common/jinja/"
cp "$(find "$BUILD" -name libllama-common-base.a | head -1)" "$PREFIX/lib/"
# The vocab files are the tokenizers mkmodel copies, the templates the chat templates it embeds.
mkdir -p "$PREFIX/share/kvstash/vocab" "$PREFIX/share/kvstash/templates"
cp "$SRC"/models/ggml-vocab-*.gguf "$PREFIX/share/kvstash/vocab/"
cp "$SRC"/models/templates/*.jinja "$PREFIX/share/kvstash/templates/"
echo "$SRC" > "$PREFIX/.complete"
echo "$PREFIX"
