// The real clients against a real server (tiny model): the vendors' SDKs parse every dialect's
// replies, streamed and whole (tests/clients/sdk_check.mjs), and the agent CLIs most people run
// (Claude Code, Codex CLI, Qwen Code, pinned in tests/clients/package.json, installed by test.sh)
// finish a turn against `kvstash serve`, hit the cache on a repeat and the disk tier after a
// restart. Offline but for loopback (tests/clients/run_cli.sh).
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "http_helpers.h"
#include "server_process.h"
#include "temp_dir.h"
#include "test_models.h"
#include "util/process.h"

namespace kvstash::fixtures {
namespace {

const std::string kClients = KVSTASH_CLIENTS_DIR;

// node_modules comes from test.sh (npm ci in tests/clients): without it these tests fail, they
// do not skip.
void expect_clients_installed() {
  ASSERT_TRUE(std::filesystem::exists(kClients + "/node_modules/.bin/claude"))
      << "the agent CLIs and SDKs are not installed: run `npm ci` in " << kClients
      << " (test.sh does)";
}

std::string base_url(int port) { return "http://127.0.0.1:" + std::to_string(port); }

// One vendor SDK check of sdk_check.mjs, whole and streamed: plain replies, forced tool calls,
// errors, token counts.
void sdk_check(const std::string& api) {
  expect_clients_installed();
  TempDir d;
  ServerProcess srv(server_args(model_path("tiny"), d.path + "/cache", {"--ctx-size", "16384"}));
  const ProcResult r = run_process({"/usr/bin/env", "node", kClients + "/sdk_check.mjs", "--base",
                                    base_url(srv.port()), "--api", api});
  EXPECT_EQ(r.rc, 0) << r.out << r.err;
  std::istringstream lines(r.out);
  int checks = 0;
  for (std::string line; std::getline(lines, line);) {
    const json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("check")) continue;
    ++checks;
    EXPECT_TRUE(j["ok"].get<bool>()) << line;
  }
  EXPECT_GE(checks, 3) << r.out;
}

TEST(AgentClients, AnthropicSdkParsesMessages) { sdk_check("messages"); }
TEST(AgentClients, OpenAiSdkParsesResponses) { sdk_check("responses"); }
TEST(AgentClients, OpenAiSdkParsesChat) { sdk_check("chat"); }

double metric(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

struct Counts {
  double prompt = 0, reused = 0;
};

Counts counts(int port) {
  const std::string m = get(port, "/metrics").raw;
  return {metric(m, "kvstash_prompt_tokens_total"), metric(m, "kvstash_tokens_reused_total")};
}

// One non-interactive run of `cli` with its scratch HOME and project in `work` (the same for the
// runs of one test: the system prompts name the working directory).
ProcResult run_cli(const std::string& cli, int port, const std::string& work) {
  return run_process({"/bin/bash", kClients + "/run_cli.sh", cli, base_url(port), work});
}

// A CLI finishes a turn and prints the reply; an identical second run is served mostly from the
// cache; after a restart, a run restores from the disk tier.
void cli_turns(const std::string& cli) {
  expect_clients_installed();
  TempDir d;
  // Agents ask for 32000 tokens, which a random model would write; a capped reply ends for length,
  // which Claude Code takes for an error. So the model is made to end its turn (<|im_end|>
  // favoured) after a few tokens, and the cap bounds the rest.
  const auto args =
      server_args(model_path("tiny"), d.path + "/cache",
                  {"--ctx-size", "65536", "--max-tokens-cap", "64", "--logit-bias", "151645+5"});
  int port = 0;
  {
    ServerProcess srv(args);
    port = srv.port();
    // The random model may end its turn at the first token (sampled at the CLI's temperature),
    // and an empty reply prints nothing: a run that printed nothing is tried again.
    ProcResult first;
    for (int attempt = 0; attempt < 3 && first.out.empty(); ++attempt) {
      first = run_cli(cli, port, d.path + "/work");
      ASSERT_EQ(first.rc, 0) << first.out << first.err << srv.log();
    }
    EXPECT_FALSE(first.out.empty()) << first.err;
    const Counts before = counts(port);
    const ProcResult second = run_cli(cli, port, d.path + "/work");
    ASSERT_EQ(second.rc, 0) << second.out << second.err;
    const Counts after = counts(port);
    const double prompt = after.prompt - before.prompt, reused = after.reused - before.reused;
    ASSERT_GT(prompt, 0);
    EXPECT_GE(reused / prompt, 0.9) << reused << " of " << prompt << " prompt tokens reused\n"
                                    << srv.log();
    std::cout << "[ " << cli << " ] repeat: " << reused << " of " << prompt
              << " prompt tokens from the cache\n";
    EXPECT_EQ(srv.stop(SIGTERM), 0);
  }
  ServerProcess srv(args);
  const ProcResult third = run_cli(cli, srv.port(), d.path + "/work");
  ASSERT_EQ(third.rc, 0) << third.out << third.err;
  const json status = get(srv.port(), "/status.json").body;
  bool disk = false;
  for (const auto& r : status["recent"]) disk = disk || r["cache_source"] == "disk";
  EXPECT_TRUE(disk) << status.dump() << srv.log();
}

TEST(AgentClients, ClaudeCodeRunsAndHitsTheCache) { cli_turns("claude"); }
TEST(AgentClients, CodexRunsAndHitsTheCache) { cli_turns("codex"); }
TEST(AgentClients, QwenCodeRunsAndHitsTheCache) { cli_turns("qwen"); }

}  // namespace
}  // namespace kvstash::fixtures
