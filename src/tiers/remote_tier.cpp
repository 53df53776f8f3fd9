#include "tiers/remote_tier.h"

#include <hiredis/hiredis.h>

#include <chrono>
#include <cstring>
#include <exception>

#include "util/hex.h"
#include "util/log.h"

namespace kvstash::tiers {

namespace {

constexpr int64_t kRetryMs = 3000;

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// --- RedisConn ----------------------------------------------------------------------------

RedisConn::RedisConn(RedisEndpoint endpoint, int timeout_ms)
    : ep_(std::move(endpoint)), timeout_ms_(timeout_ms) {}

RedisConn::~RedisConn() {
  for (auto& [name, c] : nodes_) redisFree(c);
}

redisContext* RedisConn::connect(const std::string& host, int port) {
  const std::string name = host + ":" + std::to_string(port);
  if (auto it = nodes_.find(name); it != nodes_.end()) {
    if (!it->second->err) return it->second;
    redisFree(it->second);
    nodes_.erase(it);
  }
  timeval tv{timeout_ms_ / 1000, (timeout_ms_ % 1000) * 1000};
  redisContext* c = redisConnectWithTimeout(host.c_str(), port, tv);
  if (!c || c->err) {
    err_ = c ? c->errstr : "cannot allocate a connection";
    if (c) redisFree(c);
    return nullptr;
  }
  redisSetTimeout(c, tv);
  if (!authenticate(c)) {
    redisFree(c);
    return nullptr;
  }
  nodes_[name] = c;
  return c;
}

bool RedisConn::authenticate(redisContext* c) {
  if (ep_.password.empty()) return true;
  std::vector<std::string> argv{"AUTH"};
  if (!ep_.user.empty()) argv.push_back(ep_.user);
  argv.push_back(ep_.password);
  std::vector<const char*> a;
  std::vector<size_t> len;
  for (const auto& s : argv) {
    a.push_back(s.data());
    len.push_back(s.size());
  }
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(a.size()), a.data(), len.data()));
  if (!r) {
    err_ = c->errstr[0] ? c->errstr : "connection lost";
    return false;
  }
  const bool ok = r->type != REDIS_REPLY_ERROR;
  if (!ok) err_ = "AUTH refused: " + std::string(r->str ? r->str : "");
  freeReplyObject(r);
  return ok;
}

std::unique_ptr<RedisConn::Reply> RedisConn::command(const std::vector<std::string>& argv) {
  std::vector<const char*> a;
  std::vector<size_t> len;
  for (const auto& s : argv) {
    a.push_back(s.data());
    len.push_back(s.size());
  }
  std::string host = ep_.host;
  int port = ep_.port;
  for (int hop = 0; hop < 4; ++hop) {
    redisContext* c = connect(host, port);
    if (!c) return nullptr;
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(a.size()), a.data(), len.data()));
    if (!r) {
      err_ = c->errstr[0] ? c->errstr : "connection lost";
      redisFree(c);
      nodes_.erase(host + ":" + std::to_string(port));
      return nullptr;
    }
    auto out = std::make_unique<Reply>();
    out->type = r->type;
    out->integer = r->integer;
    if (r->str) out->str.assign(r->str, r->len);
    for (size_t i = 0; i < r->elements; ++i) {
      const redisReply* e = r->element[i];
      out->elements.emplace_back(e && e->str ? std::string(e->str, e->len) : std::string());
    }
    freeReplyObject(r);
    // Cluster: a redirection names the node that owns the key. Anything else is the reply,
    // including an error that only looks like a redirection.
    const auto to = out->type == REDIS_REPLY_ERROR ? parse_redirect(out->str) : std::nullopt;
    if (to) {
      host = to->host.empty() ? ep_.host : to->host;
      port = to->port;
      if (to->kind == Redirect::kAsk) {
        if (redisContext* n = connect(host, port)) {
          if (auto* ok = static_cast<redisReply*>(redisCommand(n, "ASKING"))) freeReplyObject(ok);
        }
      }
      continue;
    }
    return out;
  }
  err_ = "too many cluster redirections";
  return nullptr;
}

// --- RemoteTier ---------------------------------------------------------------------------

RemoteTier::RemoteTier(const RemoteConfig& cfg, const Fingerprint16& fingerprint,
                       std::shared_ptr<BufferPool> pool)
    : cfg_(cfg),
      pool_(pool ? std::move(pool) : std::make_shared<BufferPool>()),
      fp_(fingerprint),
      ep_(parse_redis_url(cfg.url)),
      url_(display_url(ep_)) {
  if (!cfg.key_file.empty()) key_.emplace(FleetKey::from_file(cfg.key_file));
  prefix_ = "kvstash:" + to_hex(fingerprint) + (key_ ? ":s:" : ":");
  if (!key_) {
    log::warn("kv cache remote tier " + url_ +
              " is trusted as is: without --cache-remote-key, anyone who can write to it can "
              "plant KV this server restores");
  }
  reader_ = std::make_unique<RedisConn>(ep_, cfg.timeout_ms);
  {
    std::lock_guard lock(read_mu_);
    if (available_locked()) log::info("kv cache remote tier " + url_ + " connected");
  }
  writer_ = std::thread([this] { writer(); });
}

RemoteTier::~RemoteTier() {
  {
    std::lock_guard lock(q_mu_);
    stop_ = true;
    q_cv_.notify_all();
  }
  writer_.join();
}

std::string RemoteTier::redis_key(cache::ObjKind kind, const cache::Key& key) const {
  return prefix_ + (kind == cache::ObjKind::kChunk ? "c:" : "e:") + key.hex();
}

std::string RemoteTier::kids_key(const cache::Key& parent) const {
  return prefix_ + "kids:" + parent.hex();
}

void RemoteTier::mark_down(const std::string& why) {
  if (up_.exchange(false)) {
    log::warn("kv cache remote tier " + url_ + " unavailable (" + why +
              "); serving from local tiers until it returns");
  }
  retry_at_ms_ = steady_ms() + kRetryMs;
  std::lock_guard lock(st_mu_);
  ++st_.errors;
}

bool RemoteTier::available_locked() {
  if (up_) return true;
  if (steady_ms() < retry_at_ms_) return false;
  auto r = reader_->command({"PING"});
  if (!r || r->type == REDIS_REPLY_ERROR) {
    mark_down(r ? r->str : reader_->last_error());
    return false;
  }
  if (retry_at_ms_ != 0) log::info("kv cache remote tier " + url_ + " is back");
  up_ = true;
  return true;
}

Status RemoteTier::put(const cache::ObjectMeta& meta, const cache::ObjectStats& stats,
                       std::span<const uint8_t> payload) {
  const auto header = make_header(meta, stats, fp_, payload);
  Pending p;
  p.meta = meta;
  p.meta.payload_bytes = payload.size();
  p.blob.reserve(header.size() + payload.size());
  p.blob.insert(p.blob.end(), header.begin(), header.end());
  p.blob.insert(p.blob.end(), payload.begin(), payload.end());
  std::lock_guard lock(q_mu_);
  if (queued_bytes_ + p.blob.size() > cfg_.queue_bytes || !up_) {
    {
      std::lock_guard s(st_mu_);
      ++st_.dropped;  // overloaded or down: the local tiers still have it
    }
    if (!up_) return IoError{IoError::kUnavailable, "remote tier " + url_ + " is down"};
    return IoError{IoError::kFull, "remote write queue full"};
  }
  queued_bytes_ += p.blob.size();
  queue_.push_back(std::move(p));
  q_cv_.notify_all();
  return {};
}

void RemoteTier::writer() {
  RedisConn conn(ep_, cfg_.timeout_ms);
  for (;;) {
    Pending p;
    {
      std::unique_lock lock(q_mu_);
      q_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      p = std::move(queue_.front());
      queue_.pop_front();
      in_flight_ = true;
    }
    const size_t bytes = p.blob.size();
    try {
      write(conn, p);
    } catch (const std::exception& e) {  // allocation: this write is lost, not the thread
      mark_down(e.what());
    }
    std::lock_guard lock(q_mu_);  // after the stats, so drain() sees them
    queued_bytes_ -= bytes;
    in_flight_ = false;
    q_cv_.notify_all();
  }
}

void RemoteTier::write(RedisConn& conn, Pending& p) {
  const std::string key = redis_key(p.meta.kind, p.meta.key);
  if (key_) {
    const auto seal = key_->seal(key, p.blob);
    p.blob.insert(p.blob.end(), seal.begin(), seal.end());
  }
  auto r = conn.command(
      {"SET", key, std::string(p.blob.begin(), p.blob.end()), "EX", std::to_string(cfg_.ttl_s)});
  bool ok = r && r->type != REDIS_REPLY_ERROR;
  if (ok && p.meta.kind == cache::ObjKind::kEntry) {
    const std::string kids = kids_key(p.meta.parent);
    auto s = conn.command({"SADD", kids, format_listing_member(p.meta)});
    auto e = conn.command({"EXPIRE", kids, std::to_string(cfg_.ttl_s)});
    ok = s && e && s->type != REDIS_REPLY_ERROR;
  }
  if (!ok) {
    mark_down(r ? r->str : conn.last_error());
    return;
  }
  std::lock_guard s(st_mu_);
  ++st_.writes;
  st_.write_bytes += p.blob.size();
}

void RemoteTier::reject_locked(const std::string& what) {
  if (st_.rejected++ == 0) {
    log::warn("kv cache remote tier: rejected " + what +
              " (further rejections are counted in kvstash_cache_remote_rejected_total)");
  }
}

bool RemoteTier::drain(int timeout_ms) {
  std::unique_lock lock(q_mu_);
  return q_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                        [&] { return queue_.empty() && !in_flight_; });
}

Result<Payload> RemoteTier::get(cache::ObjKind kind, const cache::Key& key) {
  std::lock_guard lock(read_mu_);
  if (!available_locked()) return IoError{IoError::kUnavailable, "remote tier unavailable"};
  const std::string name = redis_key(kind, key);
  auto r = reader_->command({"GET", name});
  if (!r) {
    mark_down(reader_->last_error());
    return IoError{IoError::kUnavailable, "remote read failed"};
  }
  if (r->type != REDIS_REPLY_STRING) {
    std::lock_guard s(st_mu_);
    ++st_.misses;
    return IoError{IoError::kMissing, "not in the remote tier (evicted?)"};
  }
  std::span<const uint8_t> blob(reinterpret_cast<const uint8_t*>(r->str.data()), r->str.size());
  if (key_) {
    const size_t n = blob.size() < FleetKey::kSealSize ? 0 : blob.size() - FleetKey::kSealSize;
    if (!key_->verify(name, blob.first(n), blob.subspan(n))) {
      {
        std::lock_guard s(st_mu_);
        reject_locked("object " + key.hex() + ": not signed with this fleet key");
      }
      reader_->command({"DEL", name});
      return IoError{IoError::kRejected, "remote object not signed with the fleet key"};
    }
    blob = blob.first(n);
  }
  // A verified seal covers every payload byte, so the payload checksum is checked only without.
  std::string bad;
  const auto h = check_object(blob, fp_, kind, key, blob.size());
  if (!h) {
    bad = h.error().what;
  } else if (!key_ && payload_checksum(blob.subspan(kHeaderSize)) != h->payload_checksum) {
    bad = "payload checksum mismatch";
  }
  std::lock_guard s(st_mu_);
  if (!bad.empty()) {
    ++st_.damaged;
    log::warn("kv cache remote object " + key.hex() + " damaged (" + bad + "), deleting it");
    reader_->command({"DEL", name});
    return IoError{IoError::kDamaged, bad};
  }
  ++st_.reads;
  st_.read_bytes += blob.size();
  return pool_->copy(blob.subspan(kHeaderSize));
}

Status RemoteTier::remove(cache::ObjKind kind, const cache::Key& key) {
  std::lock_guard lock(read_mu_);
  if (!available_locked()) return IoError{IoError::kUnavailable, "remote tier unavailable"};
  auto r = reader_->command({"DEL", redis_key(kind, key)});
  if (!r) return IoError{IoError::kUnavailable, "remote delete failed: " + reader_->last_error()};
  if (r->type == REDIS_REPLY_ERROR) return IoError{IoError::kIo, r->str};
  return {};
}

Result<size_t> RemoteTier::chunk_depth(const std::vector<cache::Key>& chunks) {
  std::lock_guard lock(read_mu_);
  if (chunks.empty()) return size_t{0};
  if (!available_locked()) return IoError{IoError::kUnavailable, "remote tier unavailable"};
  // EXISTS per key (keys may live on different cluster nodes), stopping at the first gap.
  size_t d = 0;
  for (; d < chunks.size(); ++d) {
    auto r = reader_->command({"EXISTS", redis_key(cache::ObjKind::kChunk, chunks[d])});
    if (!r) {
      mark_down(reader_->last_error());
      break;
    }
    if (r->type != REDIS_REPLY_INTEGER || r->integer != 1) break;
  }
  return d;
}

Result<std::vector<cache::ObjectMeta>> RemoteTier::entries_under(const cache::Key& parent,
                                                                 uint32_t depth, uint32_t chunk) {
  std::vector<cache::ObjectMeta> out;
  std::lock_guard lock(read_mu_);
  if (!available_locked()) return IoError{IoError::kUnavailable, "remote tier unavailable"};
  auto r = reader_->command({"SMEMBERS", kids_key(parent)});
  if (!r) {
    mark_down(reader_->last_error());
    return IoError{IoError::kUnavailable, "remote read failed"};
  }
  for (const auto& m : r->elements) {
    const auto meta = parse_listing_member(m, parent);
    if (meta && listing_fits(*meta, depth, chunk)) {
      out.push_back(*meta);
      continue;
    }
    std::lock_guard s(st_mu_);
    reject_locked("a listing member under " + parent.hex() + " (malformed, or not at its depth)");
  }
  return out;
}

RemoteStats RemoteTier::stats() {
  RemoteStats s;
  {
    std::lock_guard lock(st_mu_);
    s = st_;
  }
  std::lock_guard lock(q_mu_);
  s.pending_bytes = queued_bytes_;
  s.up = up_;
  return s;
}

}  // namespace kvstash::tiers
