#!/usr/bin/env bash
# One command on a fresh Debian 12 machine: installs what kvstash needs, builds it (and the pinned
# llama.cpp, cached in ~/.cache/kvstash), then runs the demo.
#   ./setup.sh              everything, ending with the demo
#   ./setup.sh --build-only install and build, no demo
# Environment: KVSTASH_CUDA=1 builds the CUDA backend (needs nvcc); KVSTASH_LLAMA_SRC=DIR builds
# your own llama.cpp checkout; BUILD_DIR (default build) and KVSTASH_CACHE (default ~/.cache/kvstash).
set -euo pipefail
cd "$(dirname "$0")"
BUILD_DIR=${BUILD_DIR:-build}

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
PKGS=(build-essential cmake git pkg-config ca-certificates
      libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev
      libcpp-httplib-dev libxxhash-dev libzstd-dev libssl-dev libhiredis-dev redis-server
      clang libclang-rt-14-dev gnuplot-nox
      prometheus   # for promtool: a test checks /metrics with Prometheus' own parser
      chromium     # headless: a test renders the status page in a real browser
      iproute2     # ss: a test reads the listening socket's backlog
      haproxy curl) # deploy/fleet.sh: the balancer in front of a fleet, and its readiness checks
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
# npm fetches the pinned llama.cpp; any npm will do (some machines ship Node.js outside Debian).
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "kvstash: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q >&2
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  # Only promtool is wanted: stop the Prometheus server the package starts under systemd.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus.service >&2 || true
  fi
  # Likewise HAProxy: deploy/fleet.sh runs its own.
  if [[ " ${missing[*]} " == *" haproxy "* ]]; then
    if [ -d /run/systemd/system ]; then $SUDO systemctl disable --now haproxy.service >&2 || true
    else $SUDO service haproxy stop >&2 || true; fi
  fi
fi

args=(-DCMAKE_BUILD_TYPE=Release)
[ "${KVSTASH_CUDA:-0}" = 1 ] && args+=(-DKVSTASH_CUDA=ON)
[ -n "${KVSTASH_LLAMA_SRC:-}" ] && args+=(-DKVSTASH_LLAMA_SRC="$KVSTASH_LLAMA_SRC")
cmake -S . -B "$BUILD_DIR" "${args[@]}" >&2
cmake --build "$BUILD_DIR" -j"$(nproc)" >&2

[ "${1:-}" = --build-only ] && exit 0

MODEL=${KVSTASH_DEMO_MODEL:-$BUILD_DIR/models/qwen3-0.6b.gguf}
mkdir -p "$(dirname "$MODEL")"
[ -f "$MODEL" ] || "$BUILD_DIR/kvstash" mkmodel --shape qwen3-0.6b --vocab qwen2 -o "$MODEL"
demo_args=(--model "$MODEL")
[ -n "${KVSTASH_DEMO_TOKENS:-}" ] && demo_args+=(--prompt-tokens "$KVSTASH_DEMO_TOKENS")
"$BUILD_DIR/kvstash" demo "${demo_args[@]}"
