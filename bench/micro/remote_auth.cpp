// The fleet key's cost (tiers/fleet_key.h): AES-256-GMAC over a remote object, once per write
// (seal) and once per restore (verify), next to the XXH3 payload checksum a keyless read computes
// instead and to HMAC-SHA-256 (the alternative the fleet key does not use: several times slower).
// Bytes/s of each over one chunk's payload, one core; the cost per GB is 1 / that rate.
#include <openssl/evp.h>
#include <openssl/params.h>

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
  const auto seal = key.seal(kName, payload);
  for (auto _ : state) {
    if (!key.verify(kName, payload, seal)) state.SkipWithError("the seal does not verify");
  }
  set_bytes(state, payload.size());
}

void BM_PayloadChecksum(benchmark::State& state) {
  const auto payload = random_bytes(kChunk * state.range(0), 11);
  for (auto _ : state) benchmark::DoNotOptimize(tiers::payload_checksum(payload));
  set_bytes(state, payload.size());
}

void BM_HmacSha256(benchmark::State& state) {
  const auto payload = random_bytes(kChunk * state.range(0), 11);
  const std::string secret(32, 'k');
  std::array<uint8_t, 32> md{};
  size_t len = 0;
  for (auto _ : state) {
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                                 OSSL_PARAM_construct_end()};
    if (!EVP_Q_mac(nullptr, "HMAC", nullptr, nullptr, params, secret.data(), secret.size(),
                   payload.data(), payload.size(), md.data(), md.size(), &len)) {
      state.SkipWithError("HMAC failed");
    }
  }
  set_bytes(state, payload.size());
}

}  // namespace

void register_remote_auth() {
  for (uint64_t b : g_flags.tok_bytes) {
    const auto per_token = static_cast<int64_t>(b);
    for (auto [name, fn] : {std::pair{"FleetKeyVerify", &BM_FleetKeyVerify},
                            std::pair{"PayloadChecksum", &BM_PayloadChecksum},
                            std::pair{"HmacSha256", &BM_HmacSha256}}) {
      benchmark::RegisterBenchmark(name, fn)->Arg(per_token)->ArgName("tok_bytes");
    }
  }
}

}  // namespace kvstash::micro
