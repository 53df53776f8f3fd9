// The status page end to end: a real `kvstash serve` on loopback with the tiny model, known
// traffic, then GET /status.json checked field by field against what the requests answered and
// what the cache directory holds, and the page itself rendered by a real headless Chromium
// (Debian's `chromium`, installed by setup.sh) whose DOM must show the same numbers.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "http_helpers.h"
#include "redis_process.h"
#include "server_process.h"
#include "temp_dir.h"
#include "test_models.h"
#include "util/process.h"

using namespace kvstash;
using namespace kvstash::fixtures;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr const char* kKey = "s3cret";

class StatusPage : public ::testing::Test {
 protected:
  TempDir dir;
  std::string model = fixtures::model_path("tiny");
  std::vector<std::string> base(std::vector<std::string> extra = {}) {
    extra.insert(extra.begin(), {"--parallel", "1"});
    return server_args(model, dir.path + "/cache", extra);
  }
};

Reply get_status(int port, const std::string& key = "") {
  httplib::Client c("127.0.0.1", port);
  httplib::Headers h;
  if (!key.empty()) h = {{"Authorization", "Bearer " + key}};
  return to_reply(c.Get("/status.json", h));
}

Reply post_chat(int port, const json& msgs, const std::string& key = "") {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(120, 0);
  httplib::Headers h;
  if (!key.empty()) h = {{"Authorization", "Bearer " + key}};
  return to_reply(c.Post("/v1/chat/completions", h, chat_body(msgs, 4), "application/json"));
}

// Waits until the stores the requests queued are written, so that the disk tier's numbers stop
// moving (the status endpoint's own view of the store queue), and every slot is idle (a reply
// goes out just before its slot marks itself idle and counts the request).
json settled_status(int port, const std::string& key = "") {
  json s;
  auto settled = [&] {
    if (!s.is_object() || s["totals"]["cache"]["store_queue_bytes"] != 0) return false;
    for (const auto& sl : s["slots"]) {
      if (sl["state"] != "idle") return false;
    }
    return true;
  };
  for (int i = 0; i < 200; ++i) {
    s = get_status(port, key).body;
    if (settled()) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ADD_FAILURE() << "the server did not settle: " << s.dump();
  return s;
}

// What the disk tier holds, counted from the files themselves: objects and their bytes (a
// file is its header plus payload, which is what the tier's budget counts).
struct DiskUse {
  uint64_t bytes = 0, objects = 0;
};
DiskUse disk_use(const std::string& dir) {
  DiskUse u;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string parent = e.path().parent_path().filename();
    if (e.is_regular_file() && (parent == "chunks" || parent == "entries")) {
      u.bytes += e.file_size();
      ++u.objects;
    }
  }
  return u;
}

// The known traffic: a cold agent turn, then its next turn, which shares the first's prefix.
struct Traffic {
  Reply t1, t2;
};
Traffic known_traffic(int port, const std::string& key = "") {
  Traffic t{post_chat(port, agent(20, 1), key), post_chat(port, agent(20, 2), key)};
  EXPECT_EQ(t.t1.status, 200) << t.t1.raw;
  EXPECT_EQ(t.t2.status, 200) << t.t2.raw;
  return t;
}

int prompt_tokens(const Reply& r) { return r.body["usage"]["prompt_tokens"]; }
int completion_tokens(const Reply& r) { return r.body["usage"]["completion_tokens"]; }

// ---- The JSON endpoint ----

TEST_F(StatusPage, JsonMatchesKnownTraffic) {
  fixtures::ServerProcess srv(base());
  const json s0 = get_status(srv.port()).body;
  ASSERT_TRUE(s0.is_object());
  EXPECT_EQ(s0["totals"]["requests"], 0);
  EXPECT_TRUE(s0["recent"].empty());
  EXPECT_EQ(s0["model"], "tiny.gguf");

  const Traffic t = known_traffic(srv.port());
  ASSERT_GT(cached(t.t2), 0) << "the second turn reuses the first's prefix";
  const json s = settled_status(srv.port());

  // Totals: sums over the two requests as their responses reported them.
  const json& tot = s["totals"];
  EXPECT_EQ(tot["requests"], 2);
  EXPECT_EQ(tot["prompt_tokens"], prompt_tokens(t.t1) + prompt_tokens(t.t2));
  EXPECT_EQ(tot["cached_tokens"], cached(t.t1) + cached(t.t2));
  EXPECT_EQ(tot["prefilled_tokens"],
            prompt_tokens(t.t1) - cached(t.t1) + prompt_tokens(t.t2) - cached(t.t2));
  EXPECT_EQ(tot["completion_tokens"], completion_tokens(t.t1) + completion_tokens(t.t2));
  const std::string source2 = t.t2.body["timings"]["cache_source"];
  EXPECT_EQ(tot["hits_by_source"][source2], 1);
  EXPECT_GT(tot["saved_ms"].get<double>(), 0) << "reused tokens save an estimated prefill";

  // The recent requests, newest first, each as its response reported it.
  ASSERT_EQ(s["recent"].size(), 2u);
  const Reply* replies[] = {&t.t2, &t.t1};
  for (int i = 0; i < 2; ++i) {
    SCOPED_TRACE("recent[" + std::to_string(i) + "]");
    const json& r = s["recent"][i];
    const Reply& reply = *replies[i];
    EXPECT_EQ(r["id"], 2 - i);
    EXPECT_EQ(r["endpoint"], "chat");
    EXPECT_EQ(r["slot"], 0);
    EXPECT_EQ(r["prompt_tokens"], prompt_tokens(reply));
    EXPECT_EQ(r["cached_tokens"], cached(reply));
    EXPECT_EQ(r["prefilled_tokens"], prompt_tokens(reply) - cached(reply));
    EXPECT_EQ(r["completion_tokens"], completion_tokens(reply));
    EXPECT_EQ(r["cache_source"], reply.body["timings"]["cache_source"]);
    EXPECT_DOUBLE_EQ(r["restore_ms"].get<double>(),
                     reply.body["timings"]["restore_ms"].get<double>());
    EXPECT_NEAR(r["prefill_ms"].get<double>(),
                reply.body["timings"]["prompt_ms"].get<double>() - r["restore_ms"].get<double>(),
                1e-6);
    EXPECT_GE(r["ttft_ms"].get<double>(), r["prefill_ms"].get<double>());
    EXPECT_GE(r["total_ms"].get<double>(), r["ttft_ms"].get<double>());
    EXPECT_EQ(r["finish_reason"], reply.body["choices"][0]["finish_reason"]);
  }
  EXPECT_EQ(s["recent"][1]["cache_source"], "") << "the first turn is cold";
  // The cold turn stores its anchor (SPEC section 3): the stores each request reports add up to
  // the cache's own count by reason.
  ASSERT_FALSE(s["recent"][1]["stores"].empty());
  EXPECT_EQ(s["recent"][1]["stores"][0]["reason"], "cold");
  EXPECT_EQ(s["recent"][1]["stores"][0]["outcome"], "stored");
  std::map<std::string, int> stored;
  for (const auto& r : s["recent"]) {
    for (const auto& st : r["stores"]) stored[st["reason"]] += st["outcome"] == "stored";
  }
  for (const auto& [reason, n] : s["totals"]["cache"]["stores_by_reason"].items()) {
    EXPECT_EQ(n, stored[reason]) << reason;
  }

  // Tiers: only the disk tier is configured; its numbers are those of the files it wrote.
  ASSERT_EQ(s["tiers"].size(), 1u) << s["tiers"].dump();
  const json& disk = s["tiers"][0];
  EXPECT_EQ(disk["name"], "disk");
  const DiskUse use = disk_use(dir.path + "/cache");
  EXPECT_GT(use.objects, 0u);
  EXPECT_EQ(disk["bytes"], use.bytes);
  EXPECT_EQ(disk["objects"], use.objects);
  EXPECT_EQ(disk["budget"], 40ull << 30);
  EXPECT_EQ(disk["hits"], source2 == "disk" ? 1 : 0);

  // Slots: one, idle, holding the second turn's state.
  ASSERT_EQ(s["slots"].size(), 1u);
  const json& slot = s["slots"][0];
  EXPECT_EQ(slot["state"], "idle");
  EXPECT_TRUE(slot["request"].is_null());
  EXPECT_EQ(slot["requests"], 2);
  EXPECT_EQ(slot["live_tokens"], get(srv.port(), "/slots").body[0]["live_tokens"]);
  EXPECT_GE(slot["live_tokens"].get<int>(), prompt_tokens(t.t2));
  EXPECT_EQ(s["queued"], 0);
}

// RAM, disk and Redis configured: each is listed, fastest first, with what it really holds (the
// files on disk, the RAM copies of the same objects without their headers, the keys in Redis).
TEST_F(StatusPage, JsonListsEveryConfiguredTier) {
  fixtures::RedisProcess redis;
  fixtures::ServerProcess srv(base({"--cache-ram-budget", "64M", "--cache-remote", redis.url()}));
  ASSERT_EQ(post_chat(srv.port(), agent(24, 1)).status, 200);
  json s = settled_status(srv.port());
  for (int i = 0; i < 200 && s["tiers"].size() == 3 && s["tiers"][2]["pending_bytes"] != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    s = get_status(srv.port()).body;
  }
  ASSERT_EQ(s["tiers"].size(), 3u) << s["tiers"].dump();
  const json &ram = s["tiers"][0], &disk = s["tiers"][1], &remote = s["tiers"][2];
  EXPECT_EQ(ram["name"], "ram");
  EXPECT_EQ(disk["name"], "disk");
  EXPECT_EQ(remote["name"], "remote");
  const DiskUse use = disk_use(dir.path + "/cache");
  ASSERT_GT(use.objects, 0u);
  EXPECT_EQ(disk["objects"], use.objects);
  EXPECT_EQ(disk["bytes"], use.bytes);
  EXPECT_EQ(ram["budget"], 64ull << 20);
  EXPECT_EQ(ram["objects"], use.objects) << "stores write through and keep a RAM copy";
  EXPECT_EQ(ram["bytes"], use.bytes - 128 * use.objects) << "RAM holds payloads, no headers";
  EXPECT_EQ(remote["up"], true);
  EXPECT_TRUE(remote["budget"].is_null());
  EXPECT_EQ(remote["pending_bytes"], 0);
  EXPECT_GT(remote["bytes_written"].get<uint64_t>(), 0u);
  const std::string keys = redis.cli("--scan --pattern 'kvstash:*:[ce]:*'");
  EXPECT_EQ(remote["objects"], std::count(keys.begin(), keys.end(), '\n')) << keys;
  for (const auto& t : s["tiers"]) EXPECT_EQ(t["hits"], 0) << t["name"];
}

// A VRAM tier (on this CPU build, copies in host memory through the same device-copy path): listed
// first, holding a copy of every stored chunk (stores want one), as /props and /metrics say too.
TEST_F(StatusPage, JsonListsTheVramTierFirstWithACopyOfEveryStoredChunk) {
  fixtures::ServerProcess srv(base({"--cache-ram-budget", "64M", "--cache-vram-budget", "64M"}));
  ASSERT_EQ(post_chat(srv.port(), agent(24, 1)).status, 200);
  const json s = settled_status(srv.port());
  ASSERT_EQ(s["tiers"].size(), 3u) << s["tiers"].dump();
  const json& vram = s["tiers"][0];
  EXPECT_EQ(vram["name"], "vram");
  EXPECT_EQ(s["tiers"][1]["name"], "ram");
  EXPECT_EQ(vram["budget"], 64ull << 20);
  EXPECT_EQ(vram["device"], "CPU");
  uint64_t chunks = 0, chunk_bytes = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir.path + "/cache")) {
    if (e.is_regular_file() && e.path().parent_path().filename() == "chunks") {
      ++chunks;
      chunk_bytes += e.file_size() - 128;  // without the file header
    }
  }
  ASSERT_GT(chunks, 0u);
  EXPECT_EQ(vram["objects"], chunks);
  EXPECT_EQ(vram["bytes"], chunk_bytes);
  EXPECT_EQ(get(srv.port(), "/props").body["cache"]["vram_budget"], 64ull << 20);
  EXPECT_EQ(get(srv.port(), "/props").body["cache"]["vram_budget_auto"], false);
  EXPECT_EQ(get(srv.port(), "/props").body["cache"]["vram_bytes"], chunk_bytes);
  const std::string metrics = get(srv.port(), "/metrics").raw;
  EXPECT_NE(metrics.find("kvstash_cache_bytes{tier=\"vram\"} " + std::to_string(chunk_bytes)),
            std::string::npos)
      << metrics;
}

// While a request runs, its slot shows it: state, prompt size and progress.
TEST_F(StatusPage, JsonShowsTheRunningRequestOnItsSlot) {
  fixtures::ServerProcess srv(base());
  // A longer prompt (about 3k tokens) keeps the tiny model in its prefill for a second or more.
  json msgs = agent(21, 1);
  std::string big;
  for (int i = 0; i < 300; ++i) big += "row " + std::to_string(i) + " ok\n";
  msgs.push_back({{"role", "user"}, {"content", big}});
  std::thread client([&] { post_chat(srv.port(), msgs); });
  json running;
  for (int i = 0; i < 400 && running.is_null(); ++i) {
    const json s = get_status(srv.port()).body;
    if (s["slots"][0]["state"] == "prefill" && s["slots"][0]["request"].is_object()) {
      running = s["slots"][0]["request"];
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  client.join();
  ASSERT_TRUE(running.is_object()) << "the slot never showed the request in its prefill";
  EXPECT_EQ(running["id"], 1);
  EXPECT_EQ(running["endpoint"], "chat");
  EXPECT_GT(running["prompt_tokens"].get<int>(), 2500);
  // The reply goes out just before the slot marks itself idle.
  json s = get_status(srv.port()).body;
  for (int i = 0; i < 100 && s["slots"][0]["state"] != "idle"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    s = get_status(srv.port()).body;
  }
  EXPECT_EQ(s["slots"][0]["state"], "idle");
  EXPECT_EQ(s["recent"][0]["prompt_tokens"], running["prompt_tokens"]);
}

// What tenant a can observe of its own request in the guessing attack below: the usage and the
// status entry's cache fields (the reply's text and length are its own prompt's business).
struct Observed {
  json usage_cached, entry, totals_cache, slot_requests;
};

json cache_fields(const json& entry) {
  json out;
  for (const char* k : {"endpoint", "slot", "prompt_tokens", "cached_tokens", "prefilled_tokens",
                        "cache_source", "stores"}) {
    out[k] = entry[k];
  }
  return out;
}

json slot_requests(const json& status) {
  json out = json::array();
  for (const auto& sl : status["slots"]) out.push_back(sl["requests"]);
  return out;
}

// Issue 29 row 5, the guessing attack: tenant b sends a secret prompt, then tenant a sends a
// guess of it on a fresh server of its own, once right and once wrong (the same length). b's
// prompt is no auto scope candidate for a, and b's slot is merely occupied to a, so everything a
// sees is the same either way.
TEST_F(StatusPage, AnotherTenantsPromptCannotBeTestedByGuessing) {
  auto system = [](const std::string& code) {
    return "Tenant b's plan: the vault opens with code " + code + " on Friday at noon.";
  };
  auto msgs = [&](const std::string& code) {
    return json::array({{{"role", "system"}, {"content", system(code)}},
                        {{"role", "user"}, {"content", "Go on."}}});
  };
  auto salted = [&](const json& m, const std::string& salt) {
    return chat_body(m, 4, {{"cache_salt", salt}});
  };
  auto observe = [&](const std::string& guess_code, const std::string& name) {
    fixtures::ServerProcess srv(server_args(model, dir.path + "/" + name,
                                            {"--parallel", "2", "--cache-scope", "auto",
                                             "--cache-min-tokens", "8", "--no-settle-turns"}));
    const Reply secret = post(srv.port(), "/v1/chat/completions", salted(msgs("4821"), "b"));
    EXPECT_EQ(secret.status, 200) << secret.raw;
    const json before = settled_status(srv.port());
    const Reply guess = post(srv.port(), "/v1/chat/completions", salted(msgs(guess_code), "a"));
    EXPECT_EQ(guess.status, 200) << guess.raw;
    const json s = settled_status(srv.port());
    EXPECT_EQ(s["recent"].size(), 2u);
    EXPECT_NE(s["recent"][0]["slot"], before["recent"][0]["slot"])
        << name << ": the slot holding b's state is just occupied to a; the fresh one is used";
    return Observed{cached(guess), cache_fields(s["recent"][0]), s["totals"]["cache"],
                    slot_requests(s)};
  };
  const Observed right = observe("4821", "right"), wrong = observe("7390", "wrong");
  ASSERT_EQ(right.entry["prompt_tokens"], wrong.entry["prompt_tokens"]) << "guesses of one length";
  EXPECT_EQ(right.usage_cached, wrong.usage_cached);
  EXPECT_EQ(right.usage_cached, 0);
  EXPECT_EQ(right.entry, wrong.entry);
  EXPECT_TRUE(right.entry["stores"].empty())
      << "no scope checkpoint from b's prompt: " << right.entry.dump();
  EXPECT_EQ(right.totals_cache, wrong.totals_cache);
  EXPECT_EQ(right.slot_requests, wrong.slot_requests);
}

TEST_F(StatusPage, JsonNeedsTheApiKeyAndThePageDoesNot) {
  fixtures::ServerProcess srv(base({"--api-key", kKey}));
  ASSERT_EQ(post_chat(srv.port(), agent(22, 1), kKey).status, 200);
  for (const std::string key : {"", "nope"}) {
    const Reply r = get_status(srv.port(), key);
    EXPECT_EQ(r.status, 401) << "key '" << key << "'";
    EXPECT_NE(r.raw.find("API key"), std::string::npos);
    EXPECT_EQ(r.raw.find("prompt_tokens"), std::string::npos) << "nothing leaks: " << r.raw;
    EXPECT_EQ(r.raw.find("tiny.gguf"), std::string::npos) << "nothing leaks: " << r.raw;
  }
  const Reply ok = get_status(srv.port(), kKey);
  ASSERT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body["totals"]["requests"], 1);
  // The page loads without the key: it holds no data and asks for the key itself.
  httplib::Client c("127.0.0.1", srv.port());
  for (const char* path : {"/", "/status"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 200) << path;
    EXPECT_EQ(r->get_header_value("Content-Type"), "text/html; charset=utf-8");
    EXPECT_NE(r->body.find("<title>kvstash status</title>"), std::string::npos);
    EXPECT_EQ(r->body.find("tiny.gguf"), std::string::npos) << "the page holds no data";
  }
  EXPECT_EQ(c.Post("/", "{}", "application/json")->status, 401) << "only GET skips the key";
}

// ---- The page in a real browser ----

std::string chromium_path() {
  if (const char* p = std::getenv("KVSTASH_CHROMIUM"); p && *p) return p;
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"})
    if (fs::exists(p)) return p;
  return "";
}

#define REQUIRE_CHROMIUM(path)                                                                  \
  const std::string path = chromium_path();                                                     \
  if (path.empty()) {                                                                           \
    GTEST_SKIP() << "\n\n*** SKIPPED: no Chromium (/usr/bin/chromium). The status page's "      \
                    "browser test needs Debian's `chromium` package: run ./setup.sh, or "       \
                    "apt-get install chromium, or set KVSTASH_CHROMIUM=/path/to/chrome. ***\n"; \
  }

// Runs headless Chromium on `url` with `args` (--dump-dom, --screenshot=...) in a profile of its
// own (no key remembered from another run), and returns its stdout. Fails the test if it does
// not finish within a minute.
std::string chromium(const std::string& bin, const std::string& profile, const std::string& url,
                     const std::vector<std::string>& args) {
  std::vector<std::string> argv = {bin, "--headless",
                                   "--no-sandbox",  // tests may run as root
                                   "--disable-gpu", "--no-first-run",
                                   "--disable-background-networking", "--disable-dev-shm-usage",
                                   "--user-data-dir=" + profile, "--window-size=1280,1600",
                                   // Runs the page's timers and fetches, then returns: the first
                                   // status.json arrives and renders well within it.
                                   "--virtual-time-budget=3000"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(url);
  const std::string out = profile + ".out", err = profile + ".err";
  SpawnOptions so;
  so.stdout_path = out;
  so.stderr_path = err;
  Child child(argv, so);
  bool done = false;
  for (int i = 0; i < 600 && !(done = !child.alive()); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  auto slurp = [](const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  if (!done) {
    child.kill();
    ADD_FAILURE() << "chromium did not finish within 60 s:\n" << slurp(err);
  } else {
    EXPECT_EQ(child.status(), 0) << slurp(err);
  }
  return slurp(out);
}

// The start tag of the element whose id is `id` in serialized HTML ("" when there is none).
std::string tag_of(const std::string& dom, const std::string& id) {
  const size_t at = dom.find(" id=\"" + id + "\"");
  if (at == std::string::npos) return "";
  const size_t open = dom.rfind('<', at), close = dom.find('>', at);
  return dom.substr(open, close - open + 1);
}
// An attribute of that tag (entities left as they are: the values compared here are plain).
std::optional<std::string> attr(const std::string& dom, const std::string& id,
                                const std::string& name) {
  const std::string tag = tag_of(dom, id);
  const size_t at = tag.find(" " + name + "=\"");
  if (at == std::string::npos) return std::nullopt;
  const size_t from = at + name.size() + 3;
  return tag.substr(from, tag.find('"', from) - from);
}
// The text the element shows (up to its first child tag), thousands separators removed.
std::string shown(const std::string& dom, const std::string& id) {
  const size_t at = dom.find(" id=\"" + id + "\"");
  if (at == std::string::npos) return "";
  const size_t from = dom.find('>', at) + 1;
  std::string t = dom.substr(from, dom.find('<', from) - from);
  std::erase(t, ',');
  return t;
}

// A number on the page: its exact value and its text both equal the server's.
void expect_shown(const std::string& dom, const std::string& id, const json& want) {
  const std::string w = want.is_string() ? want.get<std::string>() : want.dump();
  EXPECT_EQ(attr(dom, id, "data-value").value_or("<missing>"), w) << "#" << id;
  EXPECT_EQ(shown(dom, id), w) << "#" << id;
}

std::string artifact(const std::string& name) {
  fs::create_directories(KVSTASH_TEST_ARTIFACT_DIR);
  return std::string(KVSTASH_TEST_ARTIFACT_DIR) + "/" + name;
}

TEST_F(StatusPage, BrowserShowsTheServersNumbers) {
  REQUIRE_CHROMIUM(bin);
  fixtures::ServerProcess srv(base());
  const Traffic t = known_traffic(srv.port());
  const json s = settled_status(srv.port());
  const std::string url = "http://127.0.0.1:" + std::to_string(srv.port()) + "/";
  const std::string dom = chromium(bin, dir.path + "/profile", url, {"--dump-dom"});
  ASSERT_TRUE(attr(dom, "content", "hidden") == std::nullopt)
      << "the page did not render status.json:\n"
      << dom.substr(0, 4000);

  const json& tot = s["totals"];
  expect_shown(dom, "total-requests", tot["requests"]);
  expect_shown(dom, "total-prompt-tokens", tot["prompt_tokens"]);
  expect_shown(dom, "total-cached-tokens", tot["cached_tokens"]);
  expect_shown(dom, "total-prefilled-tokens", tot["prefilled_tokens"]);
  expect_shown(dom, "hits-" + t.t2.body["timings"]["cache_source"].get<std::string>(), 1);
  expect_shown(dom, "stores-cold", tot["cache"]["stores_by_reason"]["cold"]);
  expect_shown(dom, "dropped-queue-full", tot["cache"]["stores_dropped"]["queue-full"]);
  expect_shown(dom, "evictions-disk-cache-full",
               tot["cache"]["evictions_by_reason"]["disk-cache-full"]);
  for (const auto& r : s["recent"]) {
    const std::string p = "req-" + r["id"].dump();
    expect_shown(dom, p + "-prompt", r["prompt_tokens"]);
    expect_shown(dom, p + "-cached", r["cached_tokens"]);
    expect_shown(dom, p + "-prefilled", r["prefilled_tokens"]);
    EXPECT_EQ(attr(dom, p + "-source", "data-value"), r["cache_source"].get<std::string>());
    EXPECT_EQ(attr(dom, p + "-finish", "data-value"), r["finish_reason"].get<std::string>());
  }
  // And they are the numbers the requests got back.
  expect_shown(dom, "req-1-prompt", prompt_tokens(t.t1));
  expect_shown(dom, "req-2-cached", cached(t.t2));
  const json& disk = s["tiers"][0];
  EXPECT_EQ(attr(dom, "tier-disk-bytes", "data-value"), disk["bytes"].dump());
  EXPECT_EQ(attr(dom, "tier-disk-budget", "data-value"), disk["budget"].dump());
  expect_shown(dom, "tier-disk-objects", disk["objects"]);
  expect_shown(dom, "tier-disk-hits", disk["hits"]);
  expect_shown(dom, "slot-0-state", "idle");
  expect_shown(dom, "slot-0-live", s["slots"][0]["live_tokens"]);
  expect_shown(dom, "slot-0-requests", 2);
  EXPECT_NE(tag_of(dom, "plot-ttft"), "") << "the plot has its TTFT line";
  EXPECT_NE(tag_of(dom, "plot-hit-rate"), "") << "and its hit-rate line";

  const std::string shot = artifact("status_page.png");
  fs::remove(shot);
  chromium(bin, dir.path + "/profile-shot", url, {"--screenshot=" + shot});
  EXPECT_TRUE(fs::exists(shot) && fs::file_size(shot) > 1000) << shot;
}

TEST_F(StatusPage, BrowserShowsNumbersOnlyWithTheApiKey) {
  REQUIRE_CHROMIUM(bin);
  fixtures::ServerProcess srv(base({"--api-key", kKey}));
  const Reply r1 = post_chat(srv.port(), agent(23, 1), kKey);
  ASSERT_EQ(r1.status, 200);
  settled_status(srv.port(), kKey);
  const std::string url = "http://127.0.0.1:" + std::to_string(srv.port()) + "/";

  // Without the key: the key form, and not one number.
  const std::string locked = chromium(bin, dir.path + "/p1", url, {"--dump-dom"});
  EXPECT_EQ(attr(locked, "auth", "hidden"), std::nullopt) << "the key form shows";
  EXPECT_NE(locked.find("data-auth=\"required\""), std::string::npos) << locked.substr(0, 3000);
  EXPECT_EQ(tag_of(locked, "total-requests"), "") << "no numbers without the key";
  EXPECT_EQ(tag_of(locked, "req-1-prompt"), "");
  EXPECT_EQ(locked.find(std::to_string(prompt_tokens(r1))), std::string::npos);
  const std::string shot = artifact("status_page_key_prompt.png");
  fs::remove(shot);
  chromium(bin, dir.path + "/p2", url, {"--screenshot=" + shot});
  EXPECT_TRUE(fs::exists(shot) && fs::file_size(shot) > 1000) << shot;

  // With the key in the fragment: the numbers.
  const std::string dom = chromium(bin, dir.path + "/p3", url + "#key=" + kKey, {"--dump-dom"});
  EXPECT_EQ(dom.find("data-auth=\"required\""), std::string::npos) << dom.substr(0, 3000);
  expect_shown(dom, "total-requests", 1);
  expect_shown(dom, "req-1-prompt", prompt_tokens(r1));
  expect_shown(dom, "req-1-cached", cached(r1));
}

}  // namespace
