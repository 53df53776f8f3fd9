// The shared remote tier: cache objects in Redis, so a fleet of servers reuses each other's
// prefixes (`--cache-remote redis://[[user]:password@]host:port`, a single Redis or any node of a
// Redis Cluster; with a password, every connection, to every node, authenticates first).
//
// Layout: each object is one string key, kvstash:<fingerprint>:<c|e>:<key>, holding the same
// 128-byte header as a disk file (disk_format.h: checksums included) followed by the payload.
// Entries are also listed in a set per parent chunk, kvstash:<fingerprint>:kids:<parent>, whose
// members are "<key>:<tokens>:<depth>:<flags>", so a lookup finds the entries along a prompt's
// chain without scanning. Redis' own eviction (maxmemory-policy) and a TTL on every key
// (--cache-remote-ttl) are the budget: a key may vanish at any time, and a lookup that finds a
// chain broken stops at the last complete prefix.
//
// Trust: whoever can write to Redis can write anything, so every value read is validated before
// use (remote_protocol.h parses; listed entries must fit the chain position they hang under).
// With a fleet key (--cache-remote-key FILE, fleet_key.h) objects live under
// kvstash:<fingerprint>:s:..., each value followed by its 28-byte AES-256-GMAC seal; a value whose
// seal does not verify is rejected: counted, deleted, never restored. Without a key the tier logs
// once that it trusts the remote values as they are.
//
// Reads happen on a local miss, synchronously, with a short timeout. Writes go behind the local
// store through a bounded queue and a writer thread, never blocking a request; what does not fit
// the queue is dropped and counted. An outage degrades to local-only with one log line and is
// retried every few seconds; recovery is logged too. Cluster redirections (MOVED/ASK) are
// followed by connecting to the named node.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tiers/disk_format.h"
#include "tiers/fleet_key.h"
#include "tiers/remote_protocol.h"
#include "tiers/tier.h"

struct redisContext;

namespace kvstash::tiers {

struct RemoteConfig {
  std::string url;                      // redis://[[user]:password@]host:port
  std::string key_file;                 // --cache-remote-key: the fleet key (empty: none)
  uint32_t ttl_s = 7 * 24 * 3600;       // --cache-remote-ttl
  uint64_t queue_bytes = 256ull << 20;  // --cache-remote-queue
  int timeout_ms = 1000;
};

struct RemoteStats {
  uint64_t writes = 0, write_bytes = 0, dropped = 0, reads = 0, read_bytes = 0, misses = 0,
           damaged = 0, errors = 0;
  uint64_t rejected = 0;  // values refused: a fleet key's tag did not verify, a listing was bad
  uint64_t pending_bytes = 0;
  bool up = false;
};

// One connection that follows cluster redirections and authenticates (AUTH) every node it
// connects to. Not thread-safe: one per thread.
class RedisConn {
 public:
  RedisConn(RedisEndpoint endpoint, int timeout_ms);
  ~RedisConn();
  // Runs a command (argv form, binary-safe). Returns nullptr on a connection problem (the reason
  // in last_error()). The reply is owned by the caller (freeReplyObject via RedisReply).
  struct Reply;
  std::unique_ptr<Reply> command(const std::vector<std::string>& argv);
  const std::string& last_error() const { return err_; }

 private:
  redisContext* connect(const std::string& host, int port);
  bool authenticate(redisContext* c);
  RedisEndpoint ep_;
  int timeout_ms_;
  redisContext* ctx_ = nullptr;
  std::map<std::string, redisContext*> nodes_;  // cluster nodes by "host:port"
  std::string err_;
};

struct RedisConn::Reply {
  int type = 0;  // REDIS_REPLY_*
  long long integer = 0;
  std::string str;
  std::vector<std::string> elements;
};

class RemoteTier : public Tier {
 public:
  // Payloads are copied out of the Redis reply into buffers of `pool` (null: a pool of its own).
  // Throws std::invalid_argument for a malformed URL (constructors are the tier API's only
  // throwers; tier.h); an unreachable server is not an error (the tier starts down).
  RemoteTier(const RemoteConfig& cfg, const Fingerprint16& fingerprint,
             std::shared_ptr<BufferPool> pool = nullptr);
  ~RemoteTier() override;

  const char* name() const override { return "remote"; }
  // Queues the object for the writer thread: ok once queued. A drop (kFull: the queue is full;
  // kUnavailable: the tier is down) is also counted in stats(); a remote write is never required
  // for correctness, so callers may ignore it.
  Status put(const cache::ObjectMeta& meta, const cache::ObjectStats& stats,
             std::span<const uint8_t> payload) override;
  // kUnavailable while the tier is down (or the read failed), kMissing, kDamaged (deleted).
  Result<Payload> get(cache::ObjKind kind, const cache::Key& key) override;
  Status remove(cache::ObjKind kind, const cache::Key& key) override;
  Status update_stats(cache::ObjKind, const cache::Key&, const cache::ObjectStats&) override {
    return {};  // Redis' own eviction and the TTL decide what stays
  }
  uint64_t object_size(const cache::ObjectMeta& meta) const override {
    return kHeaderSize + meta.payload_bytes;
  }

  // How many of `chunks` (in order) exist remotely, stopping at the first missing one (or where
  // the connection failed: the depth found so far); kUnavailable while the tier is down.
  Result<size_t> chunk_depth(const std::vector<cache::Key>& chunks);
  // Entries recorded under `parent`, chain position `depth` (the key of chunk depth-1, or the
  // root), of a C-token chunk size: members that are malformed or do not fit that position are
  // left out and counted as rejected. kUnavailable while the tier is down or the read failed.
  Result<std::vector<cache::ObjectMeta>> entries_under(const cache::Key& parent, uint32_t depth,
                                                       uint32_t chunk);
  RemoteStats stats();
  // Waits until the write queue is empty (tests and graceful shutdown), up to timeout_ms.
  bool drain(int timeout_ms);

 private:
  struct Pending {
    cache::ObjectMeta meta;
    std::vector<uint8_t> blob;  // header + payload
  };
  std::string redis_key(cache::ObjKind kind, const cache::Key& key) const;
  std::string kids_key(const cache::Key& parent) const;
  bool available_locked();  // reconnects after an outage, at most every few seconds
  void mark_down(const std::string& why);
  void reject_locked(const std::string& what);  // under st_mu_
  void writer();
  void write(RedisConn& conn, Pending& p);

  RemoteConfig cfg_;
  std::shared_ptr<BufferPool> pool_;
  Fingerprint16 fp_;
  std::optional<FleetKey> key_;
  std::string prefix_;
  RedisEndpoint ep_;
  std::string url_;  // for logs: no password

  std::mutex read_mu_;
  std::unique_ptr<RedisConn> reader_;
  std::atomic<bool> up_{false};
  std::atomic<int64_t> retry_at_ms_{0};

  std::mutex q_mu_;
  std::condition_variable q_cv_;
  std::deque<Pending> queue_;
  uint64_t queued_bytes_ = 0;
  bool in_flight_ = false;
  bool stop_ = false;
  std::thread writer_;

  std::mutex st_mu_;
  RemoteStats st_;
};

}  // namespace kvstash::tiers
