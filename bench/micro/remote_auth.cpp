// The fleet key's cost (tiers/fleet_key.h): HMAC-SHA-256 over a remote object, once per write
// (sign) and once per restore (verify), next to the XXH3 payload checksum every read already
// computes. Bytes/s of each over one chunk's payload; the cost per GB is 1 / that rate.
#include "micro.h"
#include "tiers/disk_format.h"
#include "tiers/fleet_key.h"

namespace kvstash::micro {

namespace {

const std::string kName = "kvstash:00000000000000000000000000000000:s:c:0000";

// Args: bytes per token. One chunk's payload.
void BM_FleetKeyVerify(benchmark::State& state) {
  const auto payload = random_bytes(kChunk * state.range(0), 11);
  const tiers::FleetKey key(std::string(32, 'k'));
  const auto tag = key.sign(kName, payload);
  for (auto _ : state) {
    if (!key.verify(kName, payload, tag)) state.SkipWithError("the tag does not verify");
  }
  set_bytes(state, payload.size());
}

void BM_PayloadChecksum(benchmark::State& state) {
  const auto payload = random_bytes(kChunk * state.range(0), 11);
  for (auto _ : state) benchmark::DoNotOptimize(tiers::payload_checksum(payload));
  set_bytes(state, payload.size());
}

}  // namespace

void register_remote_auth() {
  for (uint64_t b : g_flags.tok_bytes) {
    const auto per_token = static_cast<int64_t>(b);
    benchmark::RegisterBenchmark("FleetKeyVerify", BM_FleetKeyVerify)
        ->Arg(per_token)
        ->ArgName("tok_bytes");
    benchmark::RegisterBenchmark("PayloadChecksum", BM_PayloadChecksum)
        ->Arg(per_token)
        ->ArgName("tok_bytes");
  }
}

}  // namespace kvstash::micro
