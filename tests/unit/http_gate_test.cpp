// The transport's gate (server/http_gate.h): one test per rule.
#include "server/http_gate.h"

#include <gtest/gtest.h>

using namespace kvstash::server;

namespace {

GateRequest post(std::string host = "127.0.0.1:8080") {
  GateRequest r;
  r.method = "POST";
  r.path = "/v1/chat/completions";
  r.host = std::move(host);
  r.content_type = "application/json";
  return r;
}

int status(const GateRequest& r, const GateConfig& cfg = {}) {
  const auto e = gate(r, cfg);
  return e ? e->status : 0;
}

}  // namespace

TEST(HttpGate, HealthAndTheStatusPageNeedNothing) {
  for (const char* path : {"/health", "/", "/status"}) {
    GateRequest r{"GET", path, "attacker.example", "https://attacker.example", "", "", "", ""};
    EXPECT_EQ(status(r, {"secret", {}}), 0) << path;
    EXPECT_EQ(status(r), 0) << path;
  }
}

TEST(HttpGate, ReadinessNeedsNothingEither) {
  GateRequest r{"GET", "/ready", "haproxy.internal", "", "", "", "", ""};
  EXPECT_EQ(status(r, {"secret", {}}), 0) << "a balancer's health check carries no key";
  EXPECT_EQ(status(r), 0) << "nor a Host of ours";
  r.method = "POST";
  EXPECT_EQ(status(r, {"secret", {}}), 401) << "only GET and HEAD are open";
  r = GateRequest{"GET", "/readyz", "127.0.0.1", "", "", "", "", ""};
  EXPECT_EQ(status(r, {"secret", {}}), 401) << "the exact path only";
}

TEST(HttpGate, AKeyIsRequiredWhereverItIsSet) {
  const GateConfig cfg{"secret", {}};
  GateRequest r = post();
  EXPECT_EQ(status(r, cfg), 401);
  r.authorization = "Bearer secreT";
  EXPECT_EQ(status(r, cfg), 401);
  r.authorization = "Bearer secret";
  EXPECT_EQ(status(r, cfg), 0);
  r.authorization.clear();
  r.x_api_key = "secret";
  EXPECT_EQ(status(r, cfg), 0);
  r.x_api_key.clear();
  r.api_key = "secret";
  EXPECT_EQ(status(r, cfg), 0);
}

TEST(HttpGate, WithAKeyAnyHostAndOriginMayCome) {
  GateRequest r = post("inference.internal:8080");
  r.origin = "https://app.example";
  r.authorization = "Bearer k";
  EXPECT_EQ(status(r, {"k", {}}), 0);
}

TEST(HttpGate, WithoutAKeyOnlyIpLiteralsLocalhostAndAllowedNamesAreHosts) {
  for (const char* ok : {"127.0.0.1:8080", "10.1.2.3", "[::1]:8080", "localhost:8080", "LOCALHOST",
                         "app.localhost:1"}) {
    EXPECT_EQ(status(post(ok)), 0) << ok;
  }
  for (const char* bad :
       {"attacker.example:8080", "localhost.attacker.example", "", "127.0.0.1.nip.io"}) {
    EXPECT_EQ(status(post(bad)), 403) << bad;
  }
  EXPECT_EQ(status(post("gpu-box:8080"), {"", {"gpu-box"}}), 0);
}

TEST(HttpGate, WithoutAKeyAForeignOriginIsRefused) {
  GateRequest r = post();
  r.origin = "http://attacker.example";
  EXPECT_EQ(status(r), 403);
  r.origin = "http://localhost:3000";
  EXPECT_EQ(status(r), 0);
  r.origin = "http://127.0.0.1:8080";
  EXPECT_EQ(status(r), 0);
}

TEST(HttpGate, BodiesAPageCanSendWithoutAPreflightAreRefused) {
  for (const char* t :
       {"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x", "Text/Plain"}) {
    GateRequest r = post();
    r.content_type = t;
    EXPECT_EQ(status(r), 415) << t;
    r.authorization = "Bearer k";
    EXPECT_EQ(status(r, {"k", {}}), 415) << t;
  }
  for (const char* t : {"application/json", "application/json; charset=utf-8", ""}) {
    GateRequest r = post();
    r.content_type = t;
    EXPECT_EQ(status(r), 0) << t;
  }
}

TEST(HttpGate, SecretsCompareByContent) {
  EXPECT_TRUE(same_secret("abc", "abc"));
  EXPECT_FALSE(same_secret("abc", "abd"));
  EXPECT_FALSE(same_secret("abc", "abcd"));
  EXPECT_FALSE(same_secret("", "x"));
}
