#include "bench/workload.h"

#include <deque>
#include <istream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <stdexcept>

namespace kvstash::bench {
namespace {

// splitmix64: the same sequence on every platform (std distributions are not portable).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }
  // Around `mean`, from half to one and a half times it.
  uint32_t around(uint32_t mean) {
    return mean / 2 + static_cast<uint32_t>(below(std::max<uint32_t>(mean, 1)));
  }

 private:
  uint64_t s_;
};

const char* const kWords[] = {
    "buffer",  "request", "handler", "config",   "parse",   "value",   "index",   "stream",
    "cache",   "module",  "result",  "error",    "token",   "session", "update",  "client",
    "server",  "thread",  "queue",   "schedule", "memory",  "vector",  "string",  "option",
    "default", "return",  "context", "allocate", "release", "check",   "verify",  "commit",
    "branch",  "merge",   "diff",    "test",     "assert",  "fixture", "suite",   "output",
    "input",   "format",  "encode",  "decode",   "header",  "payload", "offset",  "length",
    "range",   "chunk",   "prefix",  "suffix",   "match",   "search",  "replace", "rename",
    "delete",  "create",  "open",    "close",    "flush",   "sync",    "lock",    "signal"};
constexpr size_t kNumWords = sizeof(kWords) / sizeof(kWords[0]);

std::string word(Rng& r) { return kWords[r.below(kNumWords)]; }

std::string sentence(Rng& r) {
  std::string s = word(r);
  s[0] = static_cast<char>(s[0] - 'a' + 'A');
  const size_t n = 6 + r.below(10);
  for (size_t i = 0; i < n; ++i) {
    s += ' ';
    s += word(r);
  }
  s += '.';
  return s;
}

std::string path(Rng& r) { return "src/" + word(r) + "/" + word(r) + "_" + word(r) + ".cpp"; }

// Appends pieces from `piece` until the text holds about `tokens` tokens.
std::string fill(uint32_t tokens, const TokenCounter& count,
                 const std::function<std::string()>& piece) {
  std::string out;
  size_t have = 0;
  while (have < tokens) {
    const std::string p = piece();
    have += count(p);
    out += p;
  }
  return out;
}

std::string instructions(Rng& r, uint32_t tokens, const TokenCounter& count) {
  return "You are a coding agent working in a software repository. Follow these rules.\n" +
         fill(tokens, count, [&] { return "- " + sentence(r) + " " + sentence(r) + "\n"; });
}

std::string environment(int group) {
  const int day = 1 + group % 28;
  return "<env>\nWorking directory: /home/dev/project\nPlatform: linux\nToday's date: 2026-11-" +
         std::string(day < 10 ? "0" : "") + std::to_string(day) +
         "\nSession group: " + std::to_string(group) + "\n</env>\n";
}

std::string tool_schemas(Rng& r, uint32_t tokens, const TokenCounter& count) {
  int k = 0;
  return "# Tools\nYou may call these functions:\n" + fill(tokens, count, [&] {
           std::string t = "{\"name\":\"" + word(r) + "_" + word(r) + "_" + std::to_string(k++) +
                           "\",\"description\":\"" + sentence(r) +
                           "\",\"parameters\":{\"type\":\"object\",\"properties\":{";
           const size_t n = 1 + r.below(4);
           for (size_t i = 0; i < n; ++i) {
             t += std::string(i ? "," : "") + "\"" + word(r) + "\":{\"type\":\"string\"," +
                  "\"description\":\"" + sentence(r) + "\"}";
           }
           return t + "}}}\n";
         });
}

std::string tool_call(Rng& r, uint32_t tokens, const TokenCounter& count) {
  return "I will look at the code first.\n<tool_call>{\"name\":\"read_file\",\"arguments\":{"
         "\"path\":\"" +
         path(r) + "\"}}</tool_call>\n" + fill(tokens, count, [&] { return sentence(r) + " "; });
}

std::string tool_result(Rng& r, uint32_t tokens, const TokenCounter& count) {
  int line = 1 + static_cast<int>(r.below(500));
  const std::string file = path(r);
  return "<tool_result>\n" +
         fill(tokens, count,
              [&] {
                return file + ":" + std::to_string(line++) + ": auto " + word(r) + "_" + word(r) +
                       " = " + word(r) + "(" + word(r) + ", " + std::to_string(r.below(1000)) +
                       ");\n";
              }) +
         "</tool_result>";
}

std::string user_task(Rng& r, uint32_t tokens, const TokenCounter& count) {
  return "Task: " + fill(tokens, count, [&] { return sentence(r) + " "; });
}

}  // namespace

size_t estimate_tokens(const std::string& text) { return (text.size() + 3) / 4; }

Workload agent_workload(const AgentConfig& cfg, const TokenCounter& count) {
  if (cfg.sessions < 1 || cfg.turns < 1 || cfg.sessions_per_env < 1) {
    throw std::invalid_argument(
        "agent workload: sessions, turns and sessions-per-env must be >= 1");
  }
  Rng r(cfg.seed);
  // The system prompt: instructions, then the early environment block, then the tool schemas.
  const uint32_t instr_tokens = std::max<uint32_t>(cfg.system_tokens / 10, 64);
  const uint32_t tools_tokens =
      cfg.system_tokens > instr_tokens + 64 ? cfg.system_tokens - instr_tokens - 64 : 64;
  const std::string instr = instructions(r, instr_tokens, count);
  const std::string tools = tool_schemas(r, tools_tokens, count);

  // Each session's requests, sub-agents queued right after the parent request they branch from.
  std::vector<std::deque<Step>> queues(cfg.sessions);
  for (int s = 0; s < cfg.sessions; ++s) {
    const std::string sid = "s" + std::to_string(s);
    std::vector<Message> conv = {{"system", instr + environment(s / cfg.sessions_per_env) + tools},
                                 {"user", user_task(r, cfg.user_tokens, count)}};
    for (int t = 0; t < cfg.turns; ++t) {
      if (t > 0) {
        conv.push_back({"assistant", tool_call(r, r.around(cfg.assistant_tokens), count)});
        conv.push_back({"user", tool_result(r, r.around(cfg.tool_result_tokens), count)});
      }
      queues[s].push_back({Step::Kind::kRequest, sid, conv, cfg.max_tokens});
      if (t + 1 != cfg.subagent_after) continue;
      for (int a = 0; a < cfg.subagents; ++a) {
        auto sub = conv;
        sub.push_back({"assistant", "<tool_call>{\"name\":\"spawn_agent\",\"arguments\":{}}" +
                                        std::string("</tool_call>")});
        sub.push_back({"user", "Sub-agent " + std::to_string(a) + ". " +
                                   user_task(r, cfg.user_tokens, count)});
        const std::string aid = sid + ".sub" + std::to_string(a);
        for (int u = 0; u < cfg.subagent_turns; ++u) {
          if (u > 0) {
            sub.push_back({"assistant", tool_call(r, r.around(cfg.assistant_tokens), count)});
            sub.push_back({"user", tool_result(r, r.around(cfg.tool_result_tokens), count)});
          }
          queues[s].push_back({Step::Kind::kRequest, aid, sub, cfg.max_tokens});
        }
      }
    }
  }
  // Sessions run interleaved: one request of each in turn, as agents sharing one server do.
  Workload w;
  for (bool any = true; any;) {
    any = false;
    for (auto& q : queues) {
      if (q.empty()) continue;
      w.push_back(std::move(q.front()));
      q.pop_front();
      any = true;
    }
  }
  if (cfg.restart && w.size() > 1) {
    w.insert(w.begin() + static_cast<long>(w.size() / 2), Step{Step::Kind::kRestart, "", {}, 0});
  }
  return w;
}

void write_trace(std::ostream& out, const Workload& w) {
  for (const auto& s : w) {
    nlohmann::json j;
    if (s.kind == Step::Kind::kRestart) {
      j["type"] = "restart";
    } else {
      j["type"] = "request";
      j["session"] = s.session;
      j["max_tokens"] = s.max_tokens;
      auto& ms = j["messages"] = nlohmann::json::array();
      for (const auto& m : s.messages) ms.push_back({{"role", m.role}, {"content", m.content}});
    }
    out << j.dump() << "\n";
  }
}

Workload read_trace(std::istream& in) {
  Workload w;
  std::string line;
  for (int no = 1; std::getline(in, line); ++no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      const std::string type = j.at("type");
      if (type == "restart") {
        w.push_back({Step::Kind::kRestart, "", {}, 0});
        continue;
      }
      if (type != "request") throw std::runtime_error("unknown type \"" + type + "\"");
      Step s;
      s.session = j.value("session", "s");
      s.max_tokens = j.value("max_tokens", 16);
      for (const auto& m : j.at("messages")) s.messages.push_back({m.at("role"), m.at("content")});
      if (s.messages.empty()) throw std::runtime_error("a request needs at least one message");
      if (s.max_tokens < 1) throw std::runtime_error("max_tokens must be >= 1");
      w.push_back(std::move(s));
    } catch (const std::exception& e) {
      throw std::runtime_error("trace line " + std::to_string(no) + ": " + e.what());
    }
  }
  return w;
}

size_t count_requests(const Workload& w) {
  size_t n = 0;
  for (const auto& s : w) n += s.kind == Step::Kind::kRequest;
  return n;
}

}  // namespace kvstash::bench
