// Fuzzes everything that parses bytes read back from a cache tier: the file header, the entry
// payload, the KV sections inside it (both cell layouts) and their concatenation.
#include <cstdint>
#include <cstring>
#include <span>
#include <variant>

#include "cache/entry_payload.h"
#include "engine/kv_blob.h"
#include "tiers/disk_format.h"

using namespace kvstash;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  tiers::Fingerprint16 fp{};
  if (size >= 32) std::memcpy(fp.data(), data + 16, 16);  // let inputs reach past the fp check
  auto dec = tiers::decode_header(in, fp);
  std::span<const uint8_t> payload = in;
  if (auto* h = std::get_if<tiers::FileHeader>(&dec)) {
    if (size < tiers::kHeaderSize + h->meta.payload_bytes) return 0;
    payload = in.subspan(tiers::kHeaderSize, h->meta.payload_bytes);
    if (tiers::payload_checksum(payload) != h->payload_checksum) return 0;
  }
  auto entry = cache::decode_entry_payload(payload);
  for (std::span<const uint8_t> kv :
       {payload, entry ? std::span<const uint8_t>(entry->tail_kv) : payload}) {
    for (size_t ext : {size_t(0), size_t(12)}) {
      try {
        const auto sec = engine::parse_kv_section(kv, ext);
        if (sec.cell_count) (void)sec.last_pos(kv);
        (void)engine::concat_kv_sections({kv, kv}, ext);
      } catch (const engine::KvBlobError&) {
      }
    }
    try {
      (void)engine::strip_seq_header(kv);
    } catch (const engine::KvBlobError&) {
    }
  }
  return 0;
}
