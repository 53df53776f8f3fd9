// Benchmark workloads: what a client sends, as chat requests and restart markers.
//
// A workload is a list of steps, either a chat request of one session or a server restart. It is
// model-free text; `kvstash bench` renders and tokenizes it with the model's template to compute
// the oracle, and can write it as a text trace (JSONL, readable back) or as a token trace (the
// input of `kvstash replay`).
//
// Text trace lines:
//   {"type":"request","session":"s0","messages":[{"role":"system","content":"..."},...],
//    "tools":[...],"max_tokens":16}
// Messages are OpenAI chat messages: an assistant turn may carry "tool_calls", a "tool" message
// its "tool_call_id"; "tools" is the OpenAI tools array the request sends.
//   {"type":"restart"}
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kvstash::loadgen {

struct Message {
  std::string role, content;
  std::string tool_calls;    // assistant: a JSON array of OpenAI tool calls (empty: none)
  std::string tool_call_id;  // tool: the call this message answers
  bool operator==(const Message&) const = default;
};

// The OpenAI JSON of a conversation, as a client sends it.
nlohmann::json messages_json(const std::vector<Message>& messages);

struct Step {
  enum class Kind { kRequest, kRestart } kind = Kind::kRequest;
  std::string session;  // e.g. "s1" or "s1.sub0" for a sub-agent of s1
  std::vector<Message> messages;
  std::string tools;  // a JSON array of OpenAI tools (empty: none)
  int max_tokens = 16;
  bool operator==(const Step&) const = default;
};

using Workload = std::vector<Step>;

// The agent workload of a coding-agent client:
//  - every session starts with a long system prompt: instructions and an environment block, and
//    sends tool schemas (system_tokens in all) in the request's `tools`, which the chat template
//    renders into the system block;
//  - the environment block (date, working directory) sits early in the prompt and changes between
//    groups of sessions, so a stored anchor stops matching (the anchor refresh's case);
//  - turns grow the conversation: an assistant message with a tool call, then its tool result;
//  - sessions run interleaved (several agents on one server), and each session spawns sub-agents
//    that branch from its conversation so far;
//  - the server restarts in the middle of the run.
struct AgentConfig {
  uint64_t seed = 1;
  int sessions = 4;
  int sessions_per_env = 2;  // sessions sharing one environment block (then it changes)
  int turns = 4;             // requests per session
  int subagents = 1;         // per session, branching after turn `subagent_after`
  int subagent_after = 2;
  int subagent_turns = 2;
  uint32_t system_tokens = 20000;      // the whole system prompt (instructions + tools)
  uint32_t tool_result_tokens = 1500;  // mean size of a tool result
  uint32_t user_tokens = 120;          // mean size of a user message
  uint32_t assistant_tokens = 150;     // mean size of an assistant tool call
  int max_tokens = 16;                 // tokens each request generates
  bool restart = true;                 // a server restart half-way through
};

// Counts the tokens of a text (the model's tokenizer, or an estimate without a model).
using TokenCounter = std::function<size_t(const std::string&)>;
size_t estimate_tokens(const std::string& text);

Workload agent_workload(const AgentConfig& cfg, const TokenCounter& count = estimate_tokens);

// The cold workload: `requests` prompts of about `tokens` tokens each that share nothing (each
// differs from its first token on), one request per session. It measures what the cache costs a
// request it cannot help (stores of the prompt's prefixes), next to the same server with the
// cache off (`--servers kvstash,kvstash-nocache`).
struct ColdConfig {
  uint64_t seed = 1;
  int requests = 4;
  uint32_t tokens = 6000;
  int max_tokens = 16;
};
Workload cold_workload(const ColdConfig& cfg, const TokenCounter& count = estimate_tokens);

// Text traces (JSONL). read_trace throws std::runtime_error naming the line of a bad record.
void write_trace(std::ostream& out, const Workload& w);
Workload read_trace(std::istream& in);

size_t count_requests(const Workload& w);

}  // namespace kvstash::loadgen
