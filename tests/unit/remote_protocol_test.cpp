// The remote tier's wire formats (tiers/remote_protocol.h) and the fleet key (tiers/fleet_key.h):
// every value read from Redis is untrusted, so each parser refuses what it cannot vouch for.
#include "tiers/remote_protocol.h"

#include <gtest/gtest.h>

#include "core/key.h"
#include "tiers/fleet_key.h"

using namespace kvstash;
using tiers::parse_listing_member;
using tiers::parse_redirect;
using tiers::parse_redis_url;
using tiers::RedisEndpoint;

namespace {
cache::Key parent() { return cache::root_key(std::vector<uint8_t>(16, 3)); }

cache::ObjectMeta entry(uint32_t depth, uint32_t n) {
  cache::ObjectMeta m;
  m.kind = cache::ObjKind::kEntry;
  m.key = cache::root_key(std::vector<uint8_t>(16, 4));
  m.parent = parent();
  m.depth = depth;
  m.n_tokens = n;
  m.reason = cache::Reason::kScope;
  m.has_logits = true;
  return m;
}
}  // namespace

TEST(RedisUrl, HostAndPort) {
  EXPECT_EQ(parse_redis_url("redis://10.0.0.1:7000"), (RedisEndpoint{"10.0.0.1", 7000, "", ""}));
  EXPECT_EQ(parse_redis_url("redis://cache").port, 6379);
  EXPECT_EQ(parse_redis_url("redis://cache:6380/0").port, 6380);
  EXPECT_THROW(parse_redis_url("http://x"), std::invalid_argument);
  EXPECT_THROW(parse_redis_url("redis://x:99999"), std::invalid_argument);
  EXPECT_THROW(parse_redis_url("redis://x:6379abc"), std::invalid_argument);
  EXPECT_THROW(parse_redis_url("redis://:7000"), std::invalid_argument);
}

TEST(RedisUrl, PasswordOnly) {
  EXPECT_EQ(parse_redis_url("redis://:s3cret@cache:7000"),
            (RedisEndpoint{"cache", 7000, "", "s3cret"}));
}

TEST(RedisUrl, UserAndPasswordPercentDecoded) {
  EXPECT_EQ(parse_redis_url("redis://fleet:p%40ss%3Aw@cache"),
            (RedisEndpoint{"cache", 6379, "fleet", "p@ss:w"}));
  EXPECT_EQ(parse_redis_url("redis://fleet:a@b@cache").password, "a@b");
}

TEST(RedisUrl, MalformedCredentialsAreRefused) {
  EXPECT_THROW(parse_redis_url("redis://justauser@cache"), std::invalid_argument);
  EXPECT_THROW(parse_redis_url("redis://user:@cache"), std::invalid_argument);
  EXPECT_THROW(parse_redis_url("redis://:pw%4@cache"), std::invalid_argument);
  EXPECT_THROW(parse_redis_url("redis://:pw@"), std::invalid_argument);
}

TEST(RedisRedirect, MovedAndAsk) {
  const auto m = parse_redirect("MOVED 3999 127.0.0.1:6381");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->kind, tiers::Redirect::kMoved);
  EXPECT_EQ(m->host, "127.0.0.1");
  EXPECT_EQ(m->port, 6381);
  const auto a = parse_redirect("ASK 0 :7000");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->kind, tiers::Redirect::kAsk);
  EXPECT_EQ(a->host, "");
}

TEST(RedisRedirect, MalformedIsNotARedirection) {
  for (const char* e : {"MOVED 1 127.0.0.1:notaport", "MOVED 1 host", "MOVED x h:1",
                        "MOVED 1 h:99999", "MOVED 1 h:0", "MOVED 99999 h:1", "MOVED 1 h:1 extra",
                        "MOVED", "ASK ", "ERR MOVED 1 h:1", "MOVED -1 h:1", "MOVED 1 h:+1", ""}) {
    EXPECT_FALSE(parse_redirect(e)) << e;
  }
}

TEST(RedisListing, MemberRoundTrips) {
  const auto m = entry(2, 9);
  const auto got = parse_listing_member(tiers::format_listing_member(m), parent());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->key, m.key);
  EXPECT_EQ(got->parent, parent());
  EXPECT_EQ(got->depth, 2u);
  EXPECT_EQ(got->n_tokens, 9u);
  EXPECT_EQ(got->reason, cache::Reason::kScope);
  EXPECT_TRUE(got->has_logits);
}

TEST(RedisListing, MalformedMembersAreRefused) {
  const std::string k = entry(0, 1).key.hex();
  for (const std::string& m :
       {k + ":40:0:1", k + ":40:0:1:1:1", k + ":40:0:0:1", k + ":40:0:6:1", k + ":40:0:1:2",
        k + ":0:0:1:1", k + ":-1:0:1:1", k + ":40:-1:1:1", k + ":99999999999:0:1:1",
        k + ":40:99999999999:1:1", k + ":4x:0:1:1", k + ": 40:0:1:1", k + "::0:1:1",
        "zz" + k.substr(2) + ":40:0:1:1", k.substr(1) + ":40:0:1:1", std::string("")}) {
    EXPECT_FALSE(parse_listing_member(m, parent())) << m;
  }
}

TEST(RedisListing, EntryMustFitItsChainPosition) {
  EXPECT_TRUE(tiers::listing_fits(entry(0, 40), 0, 256));
  EXPECT_TRUE(tiers::listing_fits(entry(2, 512), 2, 256));
  EXPECT_TRUE(tiers::listing_fits(entry(2, 767), 2, 256));
  EXPECT_FALSE(tiers::listing_fits(entry(1000000, 40), 0, 256)) << "depth past the chain";
  EXPECT_FALSE(tiers::listing_fits(entry(1, 40), 0, 256));
  EXPECT_FALSE(tiers::listing_fits(entry(0, 256), 0, 256)) << "longer than its chunk";
  EXPECT_FALSE(tiers::listing_fits(entry(2, 511), 2, 256)) << "shorter than its chunks";
  EXPECT_FALSE(tiers::listing_fits(entry(0, 40), 0, 0));
}

TEST(FleetKey, ShortSecretIsRefused) {
  EXPECT_THROW(tiers::FleetKey(std::string(31, 'k')), std::invalid_argument);
  EXPECT_THROW(tiers::FleetKey::from_file("/nonexistent/fleet.key"), std::invalid_argument);
}

TEST(FleetKey, OnlyTheSealedValueUnderItsNameVerifies) {
  const tiers::FleetKey key(std::string(32, 'k')), other(std::string(32, 'o'));
  std::vector<uint8_t> v(1000, 7);
  const auto seal = key.seal("kvstash:ab:s:c:01", v);
  EXPECT_TRUE(key.verify("kvstash:ab:s:c:01", v, seal));
  EXPECT_FALSE(other.verify("kvstash:ab:s:c:01", v, seal)) << "another key";
  EXPECT_FALSE(key.verify("kvstash:ab:s:c:02", v, seal)) << "moved to another object";
  EXPECT_FALSE(key.verify("kvstash:ab:s:c:01", v, std::span(seal).first(27))) << "truncated";
  auto other_nonce = seal;
  other_nonce[0] ^= 1;
  EXPECT_FALSE(key.verify("kvstash:ab:s:c:01", v, other_nonce)) << "the nonce is covered";
  v[500] ^= 1;
  EXPECT_FALSE(key.verify("kvstash:ab:s:c:01", v, seal)) << "one bit of the payload";
}

TEST(RedisUrl, DisplayedWithoutThePassword) {
  EXPECT_EQ(tiers::display_url(parse_redis_url("redis://fleet:s3cret@cache:7000")),
            "redis://fleet@cache:7000");
  EXPECT_EQ(tiers::display_url(parse_redis_url("redis://:s3cret@cache")), "redis://cache:6379");
}

TEST(FleetKey, EachSealHasAFreshNonce) {
  const tiers::FleetKey key(std::string(40, 'k'));
  const std::vector<uint8_t> v(100, 1);
  const auto a = key.seal("n", v), b = key.seal("n", v);
  EXPECT_NE(a, b);
  EXPECT_TRUE(key.verify("n", v, a));
  EXPECT_TRUE(key.verify("n", v, b));
  EXPECT_FALSE(key.verify("n", v, tiers::FleetKey::Seal{})) << "the failure seal verifies nothing";
}
