// A fleet as operators run it (deploy/fleet.sh): three kvstash instances on the tiny model, a
// 3-master Redis Cluster and HAProxy with session affinity, all real processes on loopback.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <thread>

#include "http_helpers.h"
#include "loadgen/server_runner.h"
#include "server_process.h"
#include "temp_dir.h"
#include "test_models.h"

namespace kvstash {
namespace {

using fixtures::chat_body;
using fixtures::json;
using fixtures::Reply;

std::string run(const std::string& cmd) {
  std::string out;
  if (FILE* f = ::popen((cmd + " 2>&1").c_str(), "r")) {
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
    if (::pclose(f) != 0) throw std::runtime_error(cmd + " failed:\n" + out);
  }
  return out;
}

// deploy/fleet.sh start ... stop around a test.
class Fleet {
 public:
  // `extra`: more `kvstash serve` arguments for every instance.
  explicit Fleet(const std::string& dir, const std::string& extra = "") : dir_(dir) {
    // HAProxy, three instances and three Redis nodes (and their bus ports) on consecutive ports.
    front_ = loadgen::free_port_block(7, true);
    const int redis = front_ + 4;
    run(script() + " start " + dir_ + " -m " + fixtures::model_path("tiny") + " --port " +
        std::to_string(front_) + " --redis-port " + std::to_string(redis) + " --kvstash " +
        KVSTASH_BIN + " -- --threads 1 --ctx-size 16384 --cache-boundary-align 256 " + extra);
  }
  ~Fleet() {
    if (!stopped_) (void)std::system((script() + " stop " + dir_ + " > /dev/null 2>&1").c_str());
  }
  static std::string script() { return KVSTASH_DEPLOY_DIR "/fleet.sh"; }
  int port() const { return front_; }
  int instance_port(const std::string& name) const { return front_ + std::stoi(name.substr(4)); }
  std::string log(const std::string& name) const {
    std::ifstream f(dir_ + "/" + name + "/server.log");
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
  }
  // Every process the fleet started (from fleet.env).
  std::vector<int> pids() const {
    std::ifstream f(dir_ + "/fleet.env");
    const std::string env{std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
    std::vector<int> out;
    const std::regex re("_PID[_0-9]*=([0-9]+)");
    for (auto it = std::sregex_iterator(env.begin(), env.end(), re); it != std::sregex_iterator();
         ++it) {
      out.push_back(std::stoi((*it)[1]));
    }
    return out;
  }
  void kill(const std::string& name) { run(script() + " kill " + dir_ + " " + name.substr(4)); }
  void drain(const std::string& name) { run(script() + " drain " + dir_ + " " + name.substr(4)); }
  std::string stop() {
    stopped_ = true;
    return run(script() + " stop " + dir_);
  }

 private:
  std::string dir_;
  int front_ = 0;
  bool stopped_ = false;
};

struct Turn {
  Reply reply;
  std::string instance;  // X-Served-By
};

// A greedy chat turn through the balancer as Claude Code sends it (its session header).
Turn send(int port, const std::string& session, const json& msgs) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(120, 0);
  const httplib::Headers h = {{"X-Claude-Code-Session-Id", session}};
  const auto r =
      c.Post("/v1/chat/completions", h,
             chat_body(msgs, 8, {{"logit_bias", {{"151645", false}, {"151643", false}}}}),
             "application/json");
  Turn t{fixtures::to_reply(r), r ? r->get_header_value("X-Served-By") : ""};
  return t;
}

std::string source(const Turn& t) { return t.reply.body["timings"]["cache_source"]; }

// A metric's value on one instance (0 when absent).
double metric(int port, const std::string& name) {
  const std::string m = fixtures::get(port, "/metrics").raw;
  const size_t at = m.find("\n" + name + " ");
  return at == std::string::npos ? 0 : std::stod(m.substr(at + name.size() + 2));
}

// Waits until the instance has written its queued stores to Redis.
void wait_for_remote_writes(int port) {
  for (int i = 0; i < 200; ++i) {
    if (metric(port, "kvstash_cache_remote_writes_total") > 0 &&
        metric(port, "kvstash_cache_remote_pending_bytes") == 0) {
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  FAIL() << "the instance on port " << port << " wrote nothing to Redis";
}

class FleetTest : public ::testing::Test {
 protected:
  fixtures::TempDir dir;
};

// Turns of one session land on one instance; a second session sharing the system prompt lands
// elsewhere and restores that prefix from Redis instead of recomputing it; draining the first
// instance moves its session, which resumes from the live state it stored on the way out.
TEST_F(FleetTest, TurnsOfASessionStayOnOneInstanceOthersAndDrainedOnesRestoreFromRedis) {
  // Without turn stores, so that what the drain stores is what the next turn finds.
  Fleet fleet(dir.path + "/fleet", "--cache-turn-stores off");
  std::string home;
  for (int turn = 1; turn <= 3; ++turn) {
    const Turn t = send(fleet.port(), "session-a", fixtures::agent(1, turn));
    ASSERT_EQ(t.reply.status, 200) << t.reply.raw;
    if (turn == 1) home = t.instance;
    EXPECT_EQ(t.instance, home) << "turn " << turn;
    if (turn > 1) {
      EXPECT_EQ(source(t), "live") << "turn " << turn;
    }
  }
  // Each instance's own count agrees: all three turns on one of them.
  for (const char* name : {"inst1", "inst2", "inst3"}) {
    EXPECT_EQ(metric(fleet.instance_port(name), "kvstash_requests_total"), name == home ? 3 : 0)
        << name;
  }
  wait_for_remote_writes(fleet.instance_port(home));
  // Another session with the same system prompt: keys are tried until one hashes elsewhere.
  Turn other;
  for (int k = 0; k < 20 && (other.instance.empty() || other.instance == home); ++k) {
    other = send(fleet.port(), "session-b" + std::to_string(k), fixtures::agent(1, 1, k + 1));
    ASSERT_EQ(other.reply.status, 200) << other.reply.raw;
  }
  ASSERT_NE(other.instance, home);
  EXPECT_EQ(source(other), "remote") << fleet.log(other.instance);
  EXPECT_GE(fixtures::cached(other.reply), 256);
  // The session's next turn, back home, leaves its state live there (and stored nowhere); then
  // the home instance is drained away: it stores that live state, Redis included, and the
  // session's next turn resumes from it on another instance.
  const Turn back = send(fleet.port(), "session-a", fixtures::agent(1, 4));
  ASSERT_EQ(back.reply.status, 200) << back.reply.raw;
  EXPECT_EQ(back.instance, home);
  fleet.drain(home);
  const std::string log = fleet.log(home);
  ASSERT_NE(log.find("reason=shutdown"), std::string::npos) << log;
  const size_t at = log.find("tokens=", log.find("reason=shutdown") - 40);
  const int stored = std::stoi(log.substr(at + 7));
  const Turn next = send(fleet.port(), "session-a", fixtures::agent(1, 5));
  ASSERT_EQ(next.reply.status, 200) << next.reply.raw;
  EXPECT_NE(next.instance, home);
  EXPECT_EQ(source(next), "remote");
  EXPECT_GE(fixtures::cached(next.reply), stored) << "the live state stored at exit was restored";
}

// kill -9 of the instance that holds a session: its next turns are served by another instance
// from the remote tier, equal to a fresh prefill's; every request after the kill is answered;
// stopping the fleet leaves no process behind.
TEST_F(FleetTest, AKilledInstancesSessionMovesAndRestoresFromRedis) {
  Fleet fleet(dir.path + "/fleet");
  std::string home;
  int turn2_prompt = 0;
  for (int turn = 1; turn <= 2; ++turn) {
    const Turn t = send(fleet.port(), "session-k", fixtures::agent(2, turn));
    ASSERT_EQ(t.reply.status, 200) << t.reply.raw;
    home = t.instance;
    turn2_prompt = t.reply.body["usage"]["prompt_tokens"];
  }
  wait_for_remote_writes(fleet.instance_port(home));
  fleet.kill(home);
  const Turn moved = send(fleet.port(), "session-k", fixtures::agent(2, 3));
  ASSERT_EQ(moved.reply.status, 200) << moved.reply.raw;
  EXPECT_NE(moved.instance, home);
  EXPECT_EQ(source(moved), "remote") << fleet.log(moved.instance);
  // Each reply stored its live state (--cache-turn-stores, on with a remote tier): the whole of
  // turn 2's prompt but its last chunk comes back, not only what turn 1 stored.
  EXPECT_GE(fixtures::cached(moved.reply), turn2_prompt - 256) << fleet.log(moved.instance);
  // The same prompt on a server that never caches: the restored state continues identically.
  fixtures::ServerProcess ref({"-m", fixtures::model_path("tiny"), "--ctx-size", "16384",
                               "--threads", "1", "--cache-scope", "off"});
  const Reply fresh =
      fixtures::post(ref.port(), "/v1/chat/completions",
                     chat_body(fixtures::agent(2, 3), 8,
                               {{"logit_bias", {{"151645", false}, {"151643", false}}}}));
  EXPECT_EQ(fixtures::content(moved.reply), fixtures::content(fresh));
  // Other sessions keep being served by the survivors.
  std::set<std::string> served;
  for (int s = 0; s < 6; ++s) {
    const Turn t = send(fleet.port(), "after-" + std::to_string(s), fixtures::agent(3, 1, s));
    EXPECT_EQ(t.reply.status, 200) << t.reply.raw;
    served.insert(t.instance);
  }
  EXPECT_EQ(served.count(home), 0u);
  const std::vector<int> pids = fleet.pids();
  EXPECT_EQ(pids.size(), 7u) << "3 Redis nodes, 3 instances, HAProxy";
  fleet.stop();
  for (int pid : pids) EXPECT_NE(::kill(pid, 0), 0) << "pid " << pid << " outlived the fleet";
}

}  // namespace
}  // namespace kvstash
