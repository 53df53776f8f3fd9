#include "tiers/fleet_key.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <fstream>
#include <iterator>
#include <stdexcept>

namespace kvstash::tiers {

FleetKey::FleetKey(std::string secret)
    : secret_(std::move(secret)), mac_(EVP_MAC_fetch(nullptr, "HMAC", nullptr), &EVP_MAC_free) {
  if (!mac_) throw std::invalid_argument("OpenSSL offers no HMAC");
  if (secret_.size() < kMinSecret) {
    throw std::invalid_argument("the fleet key must hold at least " + std::to_string(kMinSecret) +
                                " bytes (e.g. `openssl rand -out FILE 32`)");
  }
}

FleetKey FleetKey::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument("cannot read the fleet key file " + path);
  std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw std::invalid_argument("cannot read the fleet key file " + path);
  try {
    return FleetKey(std::move(secret));
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(path + ": " + e.what());
  }
}

FleetKey::Tag FleetKey::sign(std::string_view name, std::span<const uint8_t> value) const {
  Tag tag{};
  std::unique_ptr<EVP_MAC_CTX, void (*)(EVP_MAC_CTX*)> ctx(EVP_MAC_CTX_new(mac_.get()),
                                                           &EVP_MAC_CTX_free);
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                               OSSL_PARAM_construct_end()};
  size_t len = 0;
  const bool ok =
      ctx &&
      EVP_MAC_init(ctx.get(), reinterpret_cast<const uint8_t*>(secret_.data()), secret_.size(),
                   params) == 1 &&
      EVP_MAC_update(ctx.get(), reinterpret_cast<const uint8_t*>(name.data()), name.size()) == 1 &&
      EVP_MAC_update(ctx.get(), reinterpret_cast<const uint8_t*>("\n"), 1) == 1 &&
      EVP_MAC_update(ctx.get(), value.data(), value.size()) == 1 &&
      EVP_MAC_final(ctx.get(), tag.data(), &len, tag.size()) == 1 && len == tag.size();
  // Only an allocation failure can fail here; the zero tag then verifies nothing.
  if (!ok) tag.fill(0);
  return tag;
}

bool FleetKey::verify(std::string_view name, std::span<const uint8_t> value,
                      std::span<const uint8_t> tag) const {
  if (tag.size() != kTagSize) return false;
  const Tag want = sign(name, value);
  return CRYPTO_memcmp(want.data(), tag.data(), kTagSize) == 0 && want != Tag{};
}

}  // namespace kvstash::tiers
