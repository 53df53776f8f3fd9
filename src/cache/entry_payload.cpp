#include "cache/entry_payload.h"

#include <cstring>

namespace kvstash::cache {

namespace {
uint8_t* put_block(uint8_t* out, const void* data, uint64_t n) {
  std::memcpy(out, &n, sizeof(n));
  if (n) std::memcpy(out + sizeof(n), data, n);
  return out + sizeof(n) + n;
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

namespace {
// One encoder for both forms: `out` has room for encoded_size().
size_t encoded_size(size_t tail, size_t partial, size_t logits) {
  return 3 * sizeof(uint64_t) + tail + partial + logits * sizeof(float);
}
void encode_into(uint8_t* out, std::span<const uint8_t> tail, std::span<const uint8_t> partial,
                 std::span<const float> logits) {
  out = put_block(out, tail.data(), tail.size());
  out = put_block(out, partial.data(), partial.size());
  put_block(out, logits.data(), logits.size() * sizeof(float));
}
}  // namespace

std::vector<uint8_t> encode_entry_payload(const EntryPayload& p) {
  std::vector<uint8_t> out(encoded_size(p.tail_kv.size(), p.partial_state.size(), p.logits.size()));
  encode_into(out.data(), p.tail_kv, p.partial_state, p.logits);
  return out;
}

Payload encode_entry_payload(BufferPool& pool, std::span<const uint8_t> tail_kv,
                             std::span<const uint8_t> partial_state,
                             std::span<const float> logits) {
  auto out = pool.get(encoded_size(tail_kv.size(), partial_state.size(), logits.size()));
  encode_into(out->data(), tail_kv, partial_state, logits);
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
