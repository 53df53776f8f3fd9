// The shared remote tier against a real redis-server: two caches (two "servers", each with its
// own disk directory) reuse each other's prefixes through it.
#include "tiers/remote_tier.h"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <httplib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "redis_process.h"
#include "server_process.h"
#include "synthetic_kv.h"
#include "temp_dir.h"
#include "test_models.h"
#include "util/hex.h"
#include "util/log.h"

using namespace kvstash;
namespace fs = std::filesystem;

namespace {

using fixtures::TempDir;

std::array<uint8_t, 16> fp() {
  std::array<uint8_t, 16> f;
  f.fill(9);
  return f;
}

// The Redis key of a chunk, as remote_tier.h documents it.
std::string redis_chunk_key(const cache::Key& key) {
  return "kvstash:" + to_hex(fp()) + ":c:" + key.hex();
}

cache::CacheConfig cfg(const std::string& dir, const std::string& url) {
  cache::CacheConfig c;
  c.dir = dir;
  c.chunk = fixtures::kSynthChunk;
  c.remote.url = url;
  c.remote.timeout_ms = 300;
  return c;
}

cache::CacheConfig keyed(const std::string& dir, const std::string& url,
                         const std::string& key_file) {
  cache::CacheConfig c = cfg(dir, url);
  c.remote.key_file = key_file;
  return c;
}

// A fleet key file of 32 bytes `fill`.
std::string key_file(const std::string& path, char fill) {
  std::ofstream(path, std::ios::binary) << std::string(32, fill);
  return path;
}

std::string url_with(const std::string& userinfo, int port) {
  return "redis://" + userinfo + "@127.0.0.1:" + std::to_string(port);
}

}  // namespace

TEST(RemoteTier, PrefixStoredByOneCacheIsRestoredByAnother) {
  fixtures::RedisProcess redis;
  TempDir a_dir, b_dir;
  cache::PrefixCache a(cfg(a_dir.path, redis.url()), fp());
  cache::PrefixCache b(cfg(b_dir.path, redis.url()), fp());
  const auto tokens = fixtures::conv(1500, 3);
  ASSERT_TRUE(fixtures::put(a, std::span(tokens).first(1300)).stored);
  ASSERT_TRUE(a.drain(5000));
  std::string err;
  EXPECT_EQ(fixtures::check_restore(b, tokens, &err), 1280u);
  EXPECT_EQ(err, "");
  const auto s = b.stats();
  ASSERT_TRUE(s.remote.has_value());
  EXPECT_GT(s.remote->reads, 0u);
  EXPECT_GT(s.disk_bytes, 0u) << "remote hits are promoted into the local disk tier";
}

TEST(RemoteTier, WorksAcrossTheNodesOfARedisCluster) {
  fixtures::RedisCluster cluster;
  TempDir a_dir, b_dir;
  // Each cache talks to a different node; keys live on all three (MOVED redirections).
  cache::PrefixCache a(cfg(a_dir.path, cluster.url(0)), fp());
  cache::PrefixCache b(cfg(b_dir.path, cluster.url(2)), fp());
  const auto tokens = fixtures::conv(3000, 11);
  ASSERT_TRUE(fixtures::put(a, std::span(tokens).first(2900)).stored);
  ASSERT_TRUE(a.drain(5000));
  EXPECT_GT(a.stats().remote->writes, 11u);
  std::string err;
  EXPECT_EQ(fixtures::check_restore(b, tokens, &err), 2816u);
  EXPECT_EQ(err, "");
  EXPECT_EQ(b.stats().remote->errors, 0u);
}

TEST(RemoteTier, MissingChunkStopsTheLookupAtTheLastCompletePrefix) {
  fixtures::RedisProcess redis;
  TempDir a_dir, b_dir;
  cache::PrefixCache a(cfg(a_dir.path, redis.url()), fp());
  const auto tokens = fixtures::conv(1500, 4);
  fixtures::put(a, std::span(tokens).first(1280));
  ASSERT_TRUE(a.drain(5000));
  // Redis evicts chunk 2 (of 0..4).
  const auto chain = cache::chain_keys(a.root(), tokens, fixtures::kSynthChunk);
  redis.cli("DEL " + redis_chunk_key(chain[2]));
  cache::PrefixCache b(cfg(b_dir.path, redis.url()), fp());
  std::string err;
  EXPECT_EQ(fixtures::check_restore(b, tokens, &err), 512u);
  EXPECT_EQ(err, "");
}

TEST(RemoteTier, DamagedRemoteObjectIsNeverServed) {
  fixtures::RedisProcess redis;
  TempDir a_dir, b_dir;
  cache::PrefixCache a(cfg(a_dir.path, redis.url()), fp());
  const auto tokens = fixtures::conv(800, 5);
  fixtures::put(a, std::span(tokens).first(768));
  ASSERT_TRUE(a.drain(5000));
  const auto chain = cache::chain_keys(a.root(), tokens, fixtures::kSynthChunk);
  redis.cli("SETRANGE " + redis_chunk_key(chain[1]) + " 300 XYZ");
  cache::PrefixCache b(cfg(b_dir.path, redis.url()), fp());
  std::string err;
  const uint32_t got = fixtures::check_restore(b, tokens, &err);
  // The first plan fails on the damaged chunk (never served); the next finds chunk 0 only.
  EXPECT_TRUE(got == 0 && err == "load failed") << got << " " << err;
  EXPECT_EQ(fixtures::check_restore(b, tokens, &err), 256u);
  EXPECT_EQ(b.stats().remote->damaged, 1u);
}

// Objects the engine refused (cache::RequestFlow reports them through reject()) are deleted from
// the shared tier, and this server never takes them from it again unless it stores them itself.
TEST(RemoteTier, PrefixTheEngineRefusedIsDeletedAndNotTakenAgain) {
  fixtures::RedisProcess redis;
  TempDir a_dir, b_dir, c_dir, d_dir;
  cache::PrefixCache a(cfg(a_dir.path, redis.url()), fp());
  const auto tokens = fixtures::conv(1100, 12);
  fixtures::put(a, std::span(tokens).first(1050));
  ASSERT_TRUE(a.drain(5000));
  cache::PrefixCache b(cfg(b_dir.path, redis.url()), fp());
  const auto plan = b.plan(tokens, {});
  ASSERT_EQ(plan.resume_at, 1024u);
  ASSERT_TRUE(b.load(plan));
  b.reject(plan, "refused by the engine");
  EXPECT_EQ(b.plan(tokens, {}).resume_at, 0u);
  const auto chain = cache::chain_keys(a.root(), tokens, fixtures::kSynthChunk);
  EXPECT_EQ(redis.cli("EXISTS " + redis_chunk_key(chain[0])), "0\n");
  cache::PrefixCache c(cfg(c_dir.path, redis.url()), fp());
  EXPECT_EQ(c.plan(tokens, {}).resume_at, 0u) << "another server finds nothing either";
  // A server that never refused them uploads the same keys again: b does not take them back.
  cache::PrefixCache d(cfg(d_dir.path, redis.url()), fp());
  fixtures::put(d, std::span(tokens).first(1050));
  ASSERT_TRUE(d.drain(5000));
  EXPECT_EQ(b.plan(tokens, {}).resume_at, 0u);
  // Until it stores the prefix itself.
  fixtures::put(b, std::span(tokens).first(1050));
  std::string err;
  EXPECT_EQ(fixtures::check_restore(b, tokens, &err), 1024u);
  EXPECT_EQ(err, "");
}

TEST(RemoteTier, OutageDegradesToLocalOnlyAndRecovers) {
  auto redis = std::make_unique<fixtures::RedisProcess>();
  const int port = redis->port();
  TempDir a_dir;
  std::vector<std::string> logs;
  log::set_hook([&](const std::string& l) { logs.push_back(l); });
  cache::PrefixCache a(cfg(a_dir.path, redis->url()), fp());
  const auto t1 = fixtures::conv(800, 6), t2 = fixtures::conv(800, 7);
  fixtures::put(a, t1);
  ASSERT_TRUE(a.drain(5000));
  redis->kill();
  // Lookups and stores go on against the local tiers.
  std::string err;
  EXPECT_EQ(fixtures::check_restore(a, t1, &err), 768u);
  EXPECT_TRUE(fixtures::put(a, t2).stored);
  EXPECT_EQ(fixtures::check_restore(a, t2, &err), 768u);
  EXPECT_FALSE(a.stats().remote->up);
  redis = std::make_unique<fixtures::RedisProcess>(port);
  std::this_thread::sleep_for(std::chrono::milliseconds(3200));  // the retry interval
  fixtures::check_restore(a, fixtures::conv(900, 8), &err);
  EXPECT_TRUE(a.stats().remote->up);
  log::set_hook(nullptr);
  bool down = false, back = false;
  for (const auto& l : logs) {
    down |= l.find("unavailable") != std::string::npos;
    back |= l.find("is back") != std::string::npos;
  }
  EXPECT_TRUE(down && back);
}

namespace {

nlohmann::json fleet_messages() {
  nlohmann::json msgs = nlohmann::json::array();
  std::string sys = "You are a fleet agent. Tools:\n";
  for (int i = 0; i < 80; ++i) sys += "{\"name\":\"tool_" + std::to_string(i) + "\"}\n";
  msgs.push_back({{"role", "system"}, {"content", sys}});
  msgs.push_back({{"role", "user"}, {"content", "Summarise the repository."}});
  return msgs;
}

nlohmann::json ask(int port, const nlohmann::json& m) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60, 0);
  auto r = c.Post("/v1/chat/completions",
                  nlohmann::json{{"messages", m}, {"max_tokens", 6}, {"temperature", 0}}.dump(),
                  "application/json");
  return r ? nlohmann::json::parse(r->body) : nlohmann::json();
}

std::string metrics(int port) {
  httplib::Client c("127.0.0.1", port);
  auto m = c.Get("/metrics");
  return m ? m->body : "";
}

// Waits until the server's writes reached Redis: the disk writer hands each object to the Redis
// writer after its file lands, so both queues must be empty (one alone can be between two
// objects).
void wait_for_remote_writes(int port) {
  for (int i = 0; i < 200; ++i) {
    const std::string m = metrics(port);
    if (m.find("kvstash_cache_store_queue_bytes 0") != std::string::npos &&
        m.find("kvstash_cache_remote_pending_bytes 0") != std::string::npos &&
        m.find("kvstash_cache_remote_writes_total 0") == std::string::npos) {
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

std::vector<std::string> serve_args(const std::string& cache_dir, const std::string& url) {
  return {"-m",
          fixtures::model_path("tiny"),
          "--ctx-size",
          "8192",
          "--cache-dir",
          cache_dir,
          "--cache-remote",
          url,
          "--cache-boundary-align",
          "256"};
}

}  // namespace

TEST(RemoteTier, TwoServersShareAPrefixAndSurviveARedisOutage) {
  fixtures::RedisProcess redis;
  TempDir dir;
  fixtures::ServerProcess a(serve_args(dir.path + "/a", redis.url())),
      b(serve_args(dir.path + "/b", redis.url()));
  nlohmann::json msgs = fleet_messages();
  const auto ra = ask(a.port(), msgs);
  ASSERT_TRUE(ra.contains("usage")) << ra.dump();
  wait_for_remote_writes(a.port());
  // B has never seen this prompt and its disk is empty: A's cold anchor comes through Redis.
  const auto rb = ask(b.port(), msgs);
  EXPECT_GE(rb["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 512) << b.log();
  EXPECT_NE(b.log().find("kv cache hit tokens="), std::string::npos);
  EXPECT_EQ(rb["choices"][0]["message"]["content"], ra["choices"][0]["message"]["content"]);
  redis.kill();
  msgs.push_back({{"role", "assistant"}, {"content", "ok"}});
  msgs.push_back({{"role", "user"}, {"content", "And the tests?"}});
  EXPECT_TRUE(ask(a.port(), msgs).contains("usage")) << "A serves without Redis";
  EXPECT_TRUE(ask(b.port(), msgs).contains("usage")) << "B serves without Redis";
}

// The serve flags end to end: a password in the URL and --cache-remote-key; the password never
// reaches a log line.
TEST(RemoteTier, TwoServersWithAPasswordAndAFleetKeyShareAPrefix) {
  fixtures::RedisProcess redis(0, {"--requirepass", "s3cret"});
  TempDir dir;
  const std::string url = url_with(":s3cret", redis.port());
  const std::string key = key_file(dir.path + "/fleet.key", 'f');
  auto args = [&](const std::string& cache_dir) {
    auto v = serve_args(cache_dir, url);
    v.insert(v.end(), {"--cache-remote-key", key});
    return v;
  };
  fixtures::ServerProcess a(args(dir.path + "/a")), b(args(dir.path + "/b"));
  const auto msgs = fleet_messages();
  const auto ra = ask(a.port(), msgs);
  ASSERT_TRUE(ra.contains("usage")) << ra.dump();
  wait_for_remote_writes(a.port());
  const auto rb = ask(b.port(), msgs);
  EXPECT_GE(rb["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 512) << b.log();
  EXPECT_EQ(rb["choices"][0]["message"]["content"], ra["choices"][0]["message"]["content"]);
  EXPECT_NE(metrics(b.port()).find("kvstash_cache_remote_rejected_total 0"), std::string::npos);
  EXPECT_NE(redis.cli("-a s3cret --no-auth-warning --scan --pattern 'kvstash:*:s:c:*'"), "")
      << "sealed objects, in their own namespace";
  for (const auto* s : {&a, &b}) {
    EXPECT_EQ(s->log().find("s3cret"), std::string::npos);
    EXPECT_EQ(s->log().find("trusted as is"), std::string::npos);
  }
}

// A reply that only looks like a cluster redirection is an error reply like any other, never an
// exception (thrown in the writer thread, it would terminate the server).
TEST(RemoteTier, MalformedRedirectionIsAnErrorReplyNotAnException) {
  fixtures::RedisProcess redis;
  tiers::RedisConn conn(tiers::parse_redis_url(redis.url()), 300);
  for (const std::string e :
       {"MOVED 1 127.0.0.1:notaport", "MOVED 1 host", "ASK 1 127.0.0.1:99999999999"}) {
    std::unique_ptr<tiers::RedisConn::Reply> r;
    ASSERT_NO_THROW(r = conn.command({"EVAL", "return redis.error_reply('" + e + "')", "0"})) << e;
    ASSERT_TRUE(r) << e << ": " << conn.last_error();
    EXPECT_EQ(r->type, REDIS_REPLY_ERROR);
    EXPECT_EQ(r->str, e);
  }
}

// One SADD of a crafted listing member (an entry claiming a depth past the chain) and the
// matching prompt crashed a live server: the member is rejected and counted, nothing planned.
TEST(RemoteTier, CraftedListingMemberIsRejectedNotPlanned) {
  fixtures::RedisProcess redis;
  TempDir b_dir;
  cache::PrefixCache b(cfg(b_dir.path, redis.url()), fp());
  const auto tokens = fixtures::conv(41, 13);
  const cache::Key e = cache::entry_key(b.root(), std::span(tokens).first(40));
  redis.cli("SADD kvstash:" + to_hex(fp()) + ":kids:" + b.root().hex() + " " + e.hex() +
            ":40:1000000:1:1");
  const auto plan = b.plan(tokens, {40});
  EXPECT_EQ(plan.resume_at, 0u);
  EXPECT_FALSE(plan.entry.has_value());
  EXPECT_EQ(b.stats().remote->rejected, 1u);
}

TEST(RemoteTier, PasswordInTheUrlAuthenticates) {
  fixtures::RedisProcess redis(0, {"--requirepass", "s3cret"});
  TempDir a_dir, b_dir, c_dir;
  cache::PrefixCache a(cfg(a_dir.path, url_with(":s3cret", redis.port())), fp());
  cache::PrefixCache b(cfg(b_dir.path, url_with(":s3cret", redis.port())), fp());
  const auto tokens = fixtures::conv(800, 21);
  ASSERT_TRUE(fixtures::put(a, tokens).stored);
  ASSERT_TRUE(a.drain(5000));
  EXPECT_GT(a.stats().remote->writes, 0u);
  std::string err;
  EXPECT_EQ(fixtures::check_restore(b, tokens, &err), 768u);
  EXPECT_EQ(err, "");
  cache::PrefixCache c(cfg(c_dir.path, url_with(":wrong", redis.port())), fp());
  EXPECT_FALSE(c.stats().remote->up) << "a wrong password is an unavailable tier";
}

TEST(RemoteTier, AclUserInTheUrlAuthenticates) {
  fixtures::RedisProcess redis(
      0, {"--user", "fleet", "on", ">fleet pw", "~kvstash:*", "+@all", "--user", "default", "off"});
  TempDir a_dir, b_dir;
  cache::PrefixCache a(cfg(a_dir.path, url_with("fleet:fleet%20pw", redis.port())), fp());
  cache::PrefixCache b(cfg(b_dir.path, url_with("fleet:fleet%20pw", redis.port())), fp());
  const auto tokens = fixtures::conv(800, 22);
  ASSERT_TRUE(fixtures::put(a, tokens).stored);
  ASSERT_TRUE(a.drain(5000));
  EXPECT_GT(a.stats().remote->writes, 0u);
  EXPECT_EQ(a.stats().remote->errors, 0u);
  std::string err;
  EXPECT_EQ(fixtures::check_restore(b, tokens, &err), 768u);
  EXPECT_EQ(err, "");
}

// With a fleet key, objects written by anyone without it (here: signed with another key, their
// checksums all valid) are rejected, counted and deleted, never restored; the fleet's own are.
TEST(RemoteTier, FleetKeyRejectsObjectsNotSignedWithIt) {
  fixtures::RedisProcess redis;
  TempDir keys, m_dir, a_dir, b_dir;
  const std::string fleet = key_file(keys.path + "/fleet.key", 'f');
  const std::string forged = key_file(keys.path + "/forger.key", 'x');
  const auto tokens = fixtures::conv(800, 23);
  {
    cache::PrefixCache m(keyed(m_dir.path, redis.url(), forged), fp());
    ASSERT_TRUE(fixtures::put(m, tokens).stored);
    ASSERT_TRUE(m.drain(5000));
  }
  cache::PrefixCache b(keyed(b_dir.path, redis.url(), fleet), fp());
  std::string err;
  EXPECT_EQ(fixtures::check_restore(b, tokens, &err), 0u);
  EXPECT_EQ(fixtures::check_restore(b, tokens, &err), 0u);
  EXPECT_GE(b.stats().remote->rejected, 1u);
  EXPECT_EQ(b.stats().remote->reads, 0u);
  const auto chain = cache::chain_keys(b.root(), tokens, fixtures::kSynthChunk);
  EXPECT_EQ(redis.cli("EXISTS kvstash:" + to_hex(fp()) + ":s:c:" + chain[0].hex()), "0\n")
      << "the forged object is deleted";
  cache::PrefixCache a(keyed(a_dir.path, redis.url(), fleet), fp());
  ASSERT_TRUE(fixtures::put(a, tokens).stored);
  ASSERT_TRUE(a.drain(5000));
  err.clear();
  EXPECT_EQ(fixtures::check_restore(b, tokens, &err), 768u);
  EXPECT_EQ(err, "");
}

TEST(RemoteTier, FleetKeyShorterThan32BytesIsAConfigurationError) {
  fixtures::RedisProcess redis;
  TempDir keys, a_dir;
  std::ofstream(keys.path + "/short.key") << "too short";
  EXPECT_THROW(cache::PrefixCache(keyed(a_dir.path, redis.url(), keys.path + "/short.key"), fp()),
               std::invalid_argument);
}

TEST(RemoteTier, WithoutAFleetKeyTheTrustIsLoggedOnce) {
  fixtures::RedisProcess redis;
  TempDir keys, a_dir, b_dir;
  std::vector<std::string> logs;
  log::set_hook([&](const std::string& l) { logs.push_back(l); });
  {
    cache::PrefixCache a(cfg(a_dir.path, redis.url()), fp());
    fixtures::put(a, fixtures::conv(800, 24));
    ASSERT_TRUE(a.drain(5000));
    std::string err;
    fixtures::check_restore(a, fixtures::conv(800, 24), &err);
  }
  const auto trusted = [&] {
    return std::count_if(logs.begin(), logs.end(), [](const std::string& l) {
      return l.find("trusted as is") != std::string::npos;
    });
  };
  EXPECT_EQ(trusted(), 1);
  logs.clear();
  { cache::PrefixCache b(keyed(b_dir.path, redis.url(), key_file(keys.path + "/k", 'k')), fp()); }
  log::set_hook(nullptr);
  EXPECT_EQ(trusted(), 0);
}
