#!/usr/bin/env bash
# Builds and benchmarks kvstash on the lent GPU machine (run ON it, from the repo root; the device
# tool carries .device/, made by bench/gpu/pack.sh). See bench/GPU.md.
#
#   bench/gpu/run.sh STEP...          # run steps in the foreground
#   bench/gpu/run.sh start STEP...    # run them in the background (setsid; survives the call)
#   bench/gpu/run.sh wait SECONDS     # wait for the background run, then copy results to $OUT
#
# Steps (each redoes only what is missing: llama.sh and cmake --build are incremental, models
# are made once; so a call may stop anywhere and the next goes on):
#   prep      copy the sysroot and bundle from .device/ to $DEV (the machine's local disk)
#   llama     build the pinned llama.cpp with CUDA (libllama + llama-server) into $DEV/cache
#   kvstash   build build-cuda: kvstash kvstash-bench-tiers (KVSTASH_CUDA=ON, no tests)
#   models    kvstash mkmodel --shape qwen3-8b and qwen3-0.6b into $DEV/models
#   tiers     kvstash-bench-tiers, 8B, all layers on the GPU: 8k and 32k
#   crossover the load-vs-recompute crossover, 8B and 0.6B
#   agent8b   kvstash bench (kvstash vs llama-server), 8B shape
#   agent8b512  agent8b with --chunk 512 (what auto gives on a GPU; kept for older trees)
#   agent8b256  agent8b with --chunk 256 (the CPU's chunk)
#   agent8bnoram  agent8b without the RAM tier (--cache-ram-budget 0; auto gives 8G on a GPU)
#   agent8bram16  agent8b with a 16G RAM tier
#   agent8bvram  agent8b with an 8G VRAM tier (--cache-vram-budget 8G)
#   agent8bmsg, agent8bresp  agent8b over Anthropic Messages / OpenAI Responses (--api)
#   agent06b  the same, 0.6B shape
#   conc06b, conc8b  kvstash bench --concurrency 16 against llama-server -np 16 (0.6B, 8B)
#   interf8b  a 20k-token prefill arriving while 4 streams of the 8B decode
#   interfchunk  the same, kvstash alone, with --chunk 128 and 64 (smaller prefill batches)
#   remotekey the Redis tier's restore rate without and with the fleet key (--cache-remote-key),
#             0.6B, 8k and 32k tokens, twice each (Redis: the machine's, else the one pack.sh carries)
#   exact     a prefill beside decoding slots, restored by a fresh process, bit-exact (8B)
#   families  bench/families.sh on the GPU: KV bytes per token and restore GB/s per family
#             (reduced-layer real widths at 8k; the full llama3-8b with f16/q8_0/q4_0 K/V when
#             $DEV/models/llama3-8b.gguf exists: kvstash mkmodel --shape llama3-8b -o it)
#   all       all of the above in order
# Builds persist only while the machine stays warm (a new machine starts bare).
set -uo pipefail
DEV=${KVSTASH_DEVICE_DIR:-/root/kvstash-device}
ARCH=${KVSTASH_CUDA_ARCH:-90}
JOBS=${JOBS:-$(nproc)}
AGENT_ARGS=${AGENT_ARGS:-}   # extra arguments for kvstash bench (e.g. --sessions 2)
mkdir -p "$DEV/log" "$DEV/results" "$DEV/models"
export PKG_CONFIG_PATH=$DEV/sysroot/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export LD_LIBRARY_PATH=$DEV/sysroot/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export KVSTASH_CUDA=1 KVSTASH_CACHE=$DEV/cache KVSTASH_LLAMA_BUNDLE=$DEV/gitRelease.bundle
export KVSTASH_LLAMA_CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=$ARCH"
export PATH=$PATH:/usr/local/cuda/bin
M8=$DEV/models/qwen3-8b.gguf
M06=$DEV/models/qwen3-0.6b.gguf
CROSS=${CROSS:-512,1024,2048,4096,8192,16384,32768}

say() { echo "== $(date +%T) $*"; }
mark() { touch "$DEV/log/$1.done"; }
# A step run twice in one call (two agent runs, say) keeps the first run's report: an existing
# report is moved aside to NAME.1, NAME.2, ... before the step writes a new one.
keep_old() {
  local i=1
  [ -e "$1" ] || return 0
  while [ -e "$1.$i" ]; do i=$((i + 1)); done
  mv "$1" "$1.$i"
}

step_prep() {
  if [ -d .device/sysroot ]; then
    rm -rf "$DEV/sysroot" && cp -r .device/sysroot "$DEV/sysroot"
    cp .device/gitRelease.bundle "$DEV/gitRelease.bundle"
    [ -d .device/redis ] && rm -rf "$DEV/redis" && cp -r .device/redis "$DEV/redis"
  fi
  [ -d "$DEV/sysroot" ] || { echo "run.sh: no sysroot: carry .device (bench/gpu/pack.sh)"; return 1; }
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  nvcc --version | tail -2; cmake --version | head -1; g++ --version | head -1
  lscpu | grep -E '^Model name|^CPU\(s\)'; free -g | head -2
  df -h "$DEV" /tmp | cat; findmnt -T "$DEV" | cat
  pkg-config --modversion cpp-httplib hiredis libxxhash
}
step_llama() {
  bash cmake/llama.sh --cuda
}
step_kvstash() {
  # llama.cpp is installed static, and its CMake package does not carry ggml-cuda's own link
  # needs (cudart, cuBLAS, the driver, and NCCL where ggml-cuda found it): add them at the end
  # of the link line. The driver library is the stub at link time, the real one at run time.
  local cuda nccl libs
  cuda=$(dirname "$(dirname "$(command -v nvcc)")")
  nccl=$(grep -h '^NCCL_LIBRARY:FILEPATH=' "$KVSTASH_CACHE"/build-*-cuda/CMakeCache.txt 2>/dev/null |
    head -1 | cut -d= -f2)
  libs="-L$cuda/lib64 -L$cuda/lib64/stubs -Wl,-rpath,$cuda/lib64"
  [ -n "$nccl" ] && [ -f "$nccl" ] && libs="$libs -Wl,-rpath,$(dirname "$nccl") $nccl"
  libs="$libs -lcublas -lcublasLt -lcudart -lcuda -ldl -lrt -lpthread"
  # CMakeLists.txt links the CUDA libraries itself; the explicit flags are the fallback that
  # worked before it did.
  # OpenSSL (the fleet key): the machine's headers, else the sysroot's (pack.sh).
  [ -f /usr/include/openssl/evp.h ] || export OPENSSL_ROOT_DIR=$DEV/sysroot
  cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DKVSTASH_CUDA=ON -DKVSTASH_TESTS=OFF \
    && cmake --build build-cuda -j"$JOBS" --target kvstash kvstash-bench-tiers && return 0
  echo "run.sh: link through CMake failed; retrying with explicit CUDA link flags"
  cmake -S . -B build-cuda -DCMAKE_CXX_STANDARD_LIBRARIES="$libs" \
    && cmake --build build-cuda -j"$JOBS" --target kvstash kvstash-bench-tiers
}
step_models() {
  [ -f "$M06" ] || build-cuda/kvstash mkmodel --shape qwen3-0.6b -o "$M06" || return 1
  [ -f "$M8" ] || build-cuda/kvstash mkmodel --shape qwen3-8b -o "$M8" || return 1
  ls -la "$DEV/models"
}
step_tiers() {
  local o=$DEV/results/tiers.md
  keep_old "$o"
  {
    echo "## 8B, 8k and 32k tokens, all layers on the GPU"
    build-cuda/kvstash-bench-tiers -m "$M8" --ngl -1 --tokens 8192,32768 --dir "$DEV/tiers" \
      --concurrent
  } 2> "$DEV/log/tiers.err" | tee "$o"
}
step_remotekey() {
  local o=$DEV/results/remotekey.md redis=redis-server url=redis://127.0.0.1:6391 libs=
  if ! command -v redis-server >/dev/null; then
    redis=$DEV/redis/redis-server
    libs=$DEV/redis
  fi
  LD_LIBRARY_PATH=$libs${libs:+:}$LD_LIBRARY_PATH "$redis" --port 6391 --save '' \
    --appendonly no --daemonize yes --logfile "$DEV/log/redis.log" || return 1
  [ -f "$M06" ] || build-cuda/kvstash mkmodel --shape qwen3-0.6b -o "$M06" || return 1
  head -c 64 /dev/urandom > "$DEV/fleet.key"
  keep_old "$o"
  {
    for run in 1 2; do
      echo "## run $run: 0.6B, Redis without the fleet key"
      build-cuda/kvstash-bench-tiers -m "$M06" --ngl -1 --tokens 8192,32768 --dir "$DEV/tiers" \
        --redis "$url"
      echo "## run $run: 0.6B, Redis with the fleet key (--redis-key)"
      build-cuda/kvstash-bench-tiers -m "$M06" --ngl -1 --tokens 8192,32768 --dir "$DEV/tiers" \
        --redis "$url" --redis-key "$DEV/fleet.key"
    done
  } 2>> "$DEV/log/remotekey.err" | tee "$o"
  pkill -f "redis-server.*6391" || true
}
step_crossover() {
  local o=$DEV/results/tiers.md
  {
    echo
    echo "## 8B crossover"
    build-cuda/kvstash-bench-tiers -m "$M8" --ngl -1 --crossover --tokens "$CROSS" --dir "$DEV/tiers"
    echo
    echo "## 0.6B crossover"
    build-cuda/kvstash-bench-tiers -m "$M06" --ngl -1 --crossover --tokens "$CROSS" --dir "$DEV/tiers"
  } 2>> "$DEV/log/tiers.err" | tee -a "$o"
}
step_families() {
  local full=$DEV/models/llama3-8b.gguf
  [ -f "$full" ] || full=
  NGL=-1 BIN=build-cuda TOKENS=8192 MODELS=$DEV/bench-models DIR=$DEV/families \
    RESULT=$DEV/results/families-gpu.md FULL_MODEL=$full FULL_TOKENS=8192 bench/families.sh
}
agent() {  # name model
  local out=$DEV/results/$1
  keep_old "$out"
  # shellcheck disable=SC2086
  build-cuda/kvstash bench -m "$2" --ngl -1 -c 65536 -o "$out" $AGENT_ARGS
}
step_agent8b() { agent agent-8b "$M8"; }
# The same with 512-token chunks (prefill batches as large as llama-server's; --chunk auto's
# choice on a GPU) and with the 256-token chunks of a CPU.
step_agent8b512() { AGENT_ARGS="$AGENT_ARGS --kvstash-arg=--chunk=512" agent agent-8b-chunk512 "$M8"; }
step_agent8b256() { AGENT_ARGS="$AGENT_ARGS --kvstash-arg=--chunk=256" agent agent-8b-chunk256 "$M8"; }
step_agent8bnoram() { AGENT_ARGS="$AGENT_ARGS --kvstash-arg=--cache-ram-budget=0" agent agent-8b-noram "$M8"; }
step_agent8bram16() { AGENT_ARGS="$AGENT_ARGS --kvstash-arg=--cache-ram-budget=16G" agent agent-8b-ram16 "$M8"; }
step_agent8bvram() { AGENT_ARGS="$AGENT_ARGS --kvstash-arg=--cache-vram-budget=8G" agent agent-8b-vram8 "$M8"; }
step_agent8bmsg() { AGENT_ARGS="$AGENT_ARGS --api messages" agent agent-8b-messages "$M8"; }
step_agent8bresp() { AGENT_ARGS="$AGENT_ARGS --api responses" agent agent-8b-responses "$M8"; }
# A cold 20k-token request with the cache on and off (and llama-server): what storing costs a
# request the cache cannot help.
step_cold8b() {
  local out=$DEV/results/cold-8b
  keep_old "$out"
  build-cuda/kvstash bench -m "$M8" --ngl -1 -c 32768 -o "$out" --workload cold \
    --cold-requests 4 --cold-tokens 20000 --servers kvstash,kvstash-nocache,llama-server
}
step_agent06b() { agent agent-0.6b "$M06"; }
# Batched decode: N concurrent streams against llama-server -np N (aggregate decode tok/s,
# inter-token latency), and a 20k-token prefill arriving while 4 streams of the 8B decode.
conc() {  # name model streams extra...
  local out=$DEV/results/$1 m=$2 n=$3
  shift 3
  keep_old "$out"
  build-cuda/kvstash bench -m "$m" --ngl -1 --concurrency "$n" --concurrency-prompt-tokens 128 \
    -o "$out" "$@"
}
step_conc06b() { conc conc-0.6b "$M06" 16 --max-tokens 128 -c 16384; }
step_conc8b() { conc conc-8b "$M8" 16 --max-tokens 128 -c 16384; }
step_interf8b() {
  conc interf-8b "$M8" 4 --max-tokens 1024 -c 110000 --concurrency-interference 20000
}
step_interfchunk() {
  local c
  for c in 128 64; do
    conc "interf-8b-chunk$c" "$M8" 4 --max-tokens 1024 -c 110000 --concurrency-interference 20000 \
      --servers kvstash --kvstash-arg=--chunk=$c
  done
}
# Exactness on the GPU: a 3k-token prompt prefilled by a 4-slot server while 3 other slots decode
# is stored, then restored by a fresh `kvstash generate`; its logits hash and 32 greedy tokens
# must equal those of a lone fresh prefill.
step_exact() {
  local d=$DEV/exact port=18777 i
  rm -rf "$d" && mkdir -p "$d"
  python3 - "$d/messages.json" <<'PY'
import json, sys
sys_prompt = "You are an agent. Tools:\n" + "".join(
    '{"name":"tool_%d","description":"reads file %d and lists it"}\n' % (i, i * 7) for i in range(120))
json.dump([{"role": "system", "content": sys_prompt}, {"role": "user", "content": "Fix the build."}],
          open(sys.argv[1], "w"))
PY
  build-cuda/kvstash serve -m "$M8" --ngl -1 --ctx-size 32768 --parallel 4 --port $port \
    --cache-dir "$d/cache" --cache-boundary-align 512 > "$d/serve.log" 2>&1 &
  local srv=$!
  for i in $(seq 120); do curl -sf localhost:$port/health >/dev/null && break; sleep 1; done
  for i in 1 2 3; do
    curl -sN localhost:$port/v1/chat/completions -H 'Content-Type: application/json' \
      -d "{\"messages\":[{\"role\":\"user\",\"content\":\"count $i\"}],\"max_tokens\":6000,\"stream\":true}" \
      > "$d/stream$i.txt" &
  done
  sleep 3
  local before after
  before=$(curl -s localhost:$port/metrics | awk '/^kvstash_decode_steps_total/{print $2}')
  curl -s localhost:$port/v1/chat/completions -H 'Content-Type: application/json' \
    -d "{\"messages\":$(cat "$d/messages.json"),\"max_tokens\":1}" > "$d/long.json"
  after=$(curl -s localhost:$port/metrics | awk '/^kvstash_decode_steps_total/{print $2}')
  echo "decode steps during the long prefill: $((after - before)); $(head -c 300 "$d/long.json")"
  kill -TERM $srv; wait $srv
  build-cuda/kvstash generate -m "$M8" --ngl -1 --ctx-size 8192 --messages "$d/messages.json" \
    -n 32 --cache-dir "$d/cache" --cache-boundary-align 512 --cache-plan longest \
    > "$d/restored.json" 2> "$d/restored.err"
  build-cuda/kvstash generate -m "$M8" --ngl -1 --ctx-size 8192 --messages "$d/messages.json" \
    -n 32 --no-cache > "$d/fresh.json" 2> "$d/fresh.err"
  python3 - "$d/restored.json" "$d/fresh.json" <<'PY'
import json, sys
r, f = (json.load(open(p)) for p in sys.argv[1:3])
same = r["logits_hash"] == f["logits_hash"] and r["tokens"] == f["tokens"]
print("restored cached_tokens=%d of %d; logits %s; 32 greedy tokens %s" % (
    r["cached_tokens"], r["prompt_tokens"], "same" if r["logits_hash"] == f["logits_hash"] else "DIFFER",
    "same" if r["tokens"] == f["tokens"] else "DIFFER"))
sys.exit(0 if same and r["cached_tokens"] > 0 else 1)
PY
}

run_steps() {
  local s
  for s in "$@"; do
    if [ "$s" = all ]; then run_steps prep llama kvstash models tiers crossover agent8b agent06b || return 1; continue; fi
    say "$s"
    local t0=$SECONDS
    if "step_$s" > >(tee "$DEV/log/$s.log") 2>&1; then
      mark "$s"; say "$s: ok ($((SECONDS - t0)) s)"
    else
      say "$s: FAILED ($((SECONDS - t0)) s)"
      # Without a build nothing else can run; a failed benchmark leaves the others to run.
      case $s in prep | llama | kvstash | models) return 1 ;; esac
    fi
  done
}

collect() {  # copies what should come back into $OUT: the run's log and one tarball of results
  [ -n "${OUT:-}" ] || return 0
  tail -c 60000 "$DEV/log/run.log" > "$OUT/run.log" 2>/dev/null
  [ -f "$DEV/log/tiers.err" ] && { echo "== tiers.err"; tail -c 20000 "$DEV/log/tiers.err"; } >> "$OUT/run.log"
  # $OUT returns at most 8 files: reports, report.json, server logs and the exact run's outputs
  # travel in one tarball (no caches, KV files or models)
  tar czf "$OUT/results.tgz" --exclude=cache --exclude='*.kv' --exclude='*.gguf' \
    --exclude=tiers -C "$DEV" results log $( [ -d "$DEV/exact" ] && echo exact) 2>/dev/null
  true
}

case "${1:-}" in
  start)
    shift
    if [ -f "$DEV/run.pid" ] && kill -0 "$(cat "$DEV/run.pid")" 2>/dev/null; then
      echo "run.sh: already running (pid $(cat "$DEV/run.pid"))"; exit 0
    fi
    # prep reads .device/ in the tree of this call; later steps use $DEV only.
    setsid nohup bash "$0" "$@" >> "$DEV/log/run.log" 2>&1 < /dev/null &
    echo $! > "$DEV/run.pid"
    echo "run.sh: started $* (pid $!), log $DEV/log/run.log"
    ;;
  wait)
    lim=${2:-540}; t0=$SECONDS
    while [ -f "$DEV/run.pid" ] && kill -0 "$(cat "$DEV/run.pid")" 2>/dev/null &&
      [ $((SECONDS - t0)) -lt "$lim" ]; do sleep 5; done
    if [ -f "$DEV/run.pid" ] && kill -0 "$(cat "$DEV/run.pid")" 2>/dev/null; then
      echo "run.sh: still running after $lim s"; else echo "run.sh: finished"; fi
    collect
    tail -n 60 "$DEV/log/run.log"
    ;;
  "") sed -n 2,25p "$0"; exit 2 ;;
  *) run_steps "$@"; rc=$?; collect; exit $rc ;;
esac
