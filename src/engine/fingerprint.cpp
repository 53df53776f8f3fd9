#include "engine/fingerprint.h"

#include <xxhash.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "util/hex.h"

#ifndef KVSTASH_LLAMA_COMMIT
#define KVSTASH_LLAMA_COMMIT "unknown"
#endif
#ifndef KVSTASH_LLAMA_PATCHES
#define KVSTASH_LLAMA_PATCHES "unknown"
#endif
#ifndef KVSTASH_LLAMA_BACKEND
#define KVSTASH_LLAMA_BACKEND "unknown"
#endif

namespace kvstash::engine {

namespace {
Fingerprint from_hash(XXH128_hash_t h) {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);
  Fingerprint f;
  std::memcpy(f.bytes.data(), c.digest, f.bytes.size());
  return f;
}
}  // namespace

std::string Fingerprint::hex() const { return to_hex(bytes); }

std::string llama_build() {
  return std::string("llama=") + KVSTASH_LLAMA_COMMIT + ";patches=" + KVSTASH_LLAMA_PATCHES +
         ";backend=" + KVSTASH_LLAMA_BACKEND;
}

Fingerprint hash_file(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) throw std::runtime_error("cannot open " + path + " to fingerprint it");
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> st(XXH3_createState(),
                                                                     &XXH3_freeState);
  XXH3_128bits_reset(st.get());
  std::vector<char> buf(8 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) {
    XXH3_128bits_update(st.get(), buf.data(), n);
  }
  if (std::ferror(f.get())) throw std::runtime_error("read error while fingerprinting " + path);
  return from_hash(XXH3_128bits_digest(st.get()));
}

Fingerprint combine(const Fingerprint& file, const std::string& settings) {
  std::string buf(reinterpret_cast<const char*>(file.bytes.data()), file.bytes.size());
  buf += settings;
  return from_hash(XXH3_128bits(buf.data(), buf.size()));
}

}  // namespace kvstash::engine
