#include "cache/entry_payload.h"

#include <cstring>

namespace kvstash::cache {

namespace {
void put_block(std::vector<uint8_t>& out, const void* data, uint64_t n) {
  const auto* p = reinterpret_cast<const uint8_t*>(&n);
  out.insert(out.end(), p, p + sizeof(n));
  const auto* d = static_cast<const uint8_t*>(data);
  out.insert(out.end(), d, d + n);
}

bool get_block(std::span<const uint8_t>& in, std::span<const uint8_t>& block) {
  uint64_t n;
  if (in.size() < sizeof(n)) return false;
  std::memcpy(&n, in.data(), sizeof(n));
  in = in.subspan(sizeof(n));
  if (n > in.size()) return false;
  block = in.subspan(0, n);
  in = in.subspan(n);
  return true;
}
}  // namespace

std::vector<uint8_t> encode_entry_payload(const EntryPayload& p) {
  std::vector<uint8_t> out;
  out.reserve(24 + p.tail_kv.size() + p.partial_state.size() + p.logits.size() * 4);
  put_block(out, p.tail_kv.data(), p.tail_kv.size());
  put_block(out, p.partial_state.data(), p.partial_state.size());
  put_block(out, p.logits.data(), p.logits.size() * sizeof(float));
  return out;
}

std::optional<EntryPayload> decode_entry_payload(std::span<const uint8_t> bytes) {
  std::span<const uint8_t> a, b, c;
  if (!get_block(bytes, a) || !get_block(bytes, b) || !get_block(bytes, c) || !bytes.empty() ||
      c.size() % sizeof(float) != 0) {
    return std::nullopt;
  }
  EntryPayload p;
  p.tail_kv.assign(a.begin(), a.end());
  p.partial_state.assign(b.begin(), b.end());
  p.logits.resize(c.size() / sizeof(float));
  if (!c.empty()) std::memcpy(p.logits.data(), c.data(), c.size());  // memcpy(null, .., 0) is UB
  return p;
}

}  // namespace kvstash::cache
