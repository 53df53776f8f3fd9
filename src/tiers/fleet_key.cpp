#include "tiers/fleet_key.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <fstream>
#include <iterator>
#include <stdexcept>

namespace kvstash::tiers {

namespace {
constexpr size_t kTagSize = FleetKey::kSealSize - FleetKey::kNonceSize;
}  // namespace

FleetKey::FleetKey(const std::string& secret)
    : mac_(EVP_MAC_fetch(nullptr, "GMAC", nullptr), &EVP_MAC_free) {
  if (secret.size() < kMinSecret) {
    throw std::invalid_argument("the fleet key must hold at least " + std::to_string(kMinSecret) +
                                " bytes (e.g. `openssl rand -out FILE 32`)");
  }
  if (!mac_) throw std::invalid_argument("OpenSSL offers no GMAC");
  unsigned n = 0;
  if (EVP_Digest(secret.data(), secret.size(), key_.data(), &n, EVP_sha256(), nullptr) != 1 ||
      n != key_.size()) {
    throw std::invalid_argument("cannot derive the fleet key (SHA-256)");
  }
}

FleetKey FleetKey::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument("cannot read the fleet key file " + path);
  std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw std::invalid_argument("cannot read the fleet key file " + path);
  try {
    return FleetKey(secret);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(path + ": " + e.what());
  }
}

bool FleetKey::tag(std::string_view name, std::span<const uint8_t> value, const uint8_t* nonce,
                   uint8_t* out) const {
  std::unique_ptr<EVP_MAC_CTX, void (*)(EVP_MAC_CTX*)> ctx(EVP_MAC_CTX_new(mac_.get()),
                                                           &EVP_MAC_CTX_free);
  char cipher[] = "AES-256-GCM";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string("cipher", cipher, 0),
      OSSL_PARAM_construct_octet_string("iv", const_cast<uint8_t*>(nonce), kNonceSize),
      OSSL_PARAM_construct_end()};
  size_t len = 0;
  return ctx && EVP_MAC_init(ctx.get(), key_.data(), key_.size(), params) == 1 &&
         EVP_MAC_update(ctx.get(), reinterpret_cast<const uint8_t*>(name.data()), name.size()) ==
             1 &&
         EVP_MAC_update(ctx.get(), reinterpret_cast<const uint8_t*>("\n"), 1) == 1 &&
         EVP_MAC_update(ctx.get(), value.data(), value.size()) == 1 &&
         EVP_MAC_final(ctx.get(), out, &len, kTagSize) == 1 && len == kTagSize;
}

FleetKey::Seal FleetKey::seal(std::string_view name, std::span<const uint8_t> value) const {
  Seal s{};
  if (RAND_bytes(s.data(), kNonceSize) != 1 || !tag(name, value, s.data(), s.data() + kNonceSize)) {
    s.fill(0);
  }
  return s;
}

bool FleetKey::verify(std::string_view name, std::span<const uint8_t> value,
                      std::span<const uint8_t> seal) const {
  if (seal.size() != kSealSize) return false;
  std::array<uint8_t, kTagSize> want{};
  return tag(name, value, seal.data(), want.data()) &&
         CRYPTO_memcmp(want.data(), seal.data() + kNonceSize, kTagSize) == 0;
}

}  // namespace kvstash::tiers
