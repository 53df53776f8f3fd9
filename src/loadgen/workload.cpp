#include "loadgen/workload.h"

#include <deque>
#include <istream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <stdexcept>

namespace kvstash::loadgen {
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

// OpenAI tools: the functions a coding agent offers, with their JSON schemas.
std::string tool_schemas(Rng& r, uint32_t tokens, const TokenCounter& count) {
  nlohmann::json tools = nlohmann::json::array();
  auto add = [&](const std::string& name, const std::string& description, nlohmann::json props) {
    nlohmann::json required = nlohmann::json::array();
    for (const auto& [k, v] : props.items()) required.push_back(k);
    tools.push_back(
        {{"type", "function"},
         {"function",
          {{"name", name},
           {"description", description},
           {"parameters", {{"type", "object"}, {"properties", props}, {"required", required}}}}}});
  };
  add("read_file", "Read a file of the repository.",
      {{"path", {{"type", "string"}, {"description", "Path relative to the root."}}}});
  add("spawn_agent", "Start a sub-agent on a task.",
      {{"task", {{"type", "string"}, {"description", "What the sub-agent should do."}}}});
  size_t have = count(tools.dump());
  for (int k = 0; have < tokens; ++k) {
    nlohmann::json props = nlohmann::json::object();
    const size_t n = 1 + r.below(4);
    for (size_t i = 0; i < n; ++i) {
      props[word(r)] = {{"type", "string"}, {"description", sentence(r)}};
    }
    const std::string before = tools.dump();
    add(word(r) + "_" + word(r) + "_" + std::to_string(k), sentence(r), props);
    have += count(tools.dump().substr(before.size() - 1));
  }
  return tools.dump();
}

std::string call_json(const std::string& id, const std::string& name, const nlohmann::json& args) {
  return nlohmann::json::array({{{"id", id},
                                 {"type", "function"},
                                 {"function", {{"name", name}, {"arguments", args.dump()}}}}})
      .dump();
}

// An assistant turn: some reasoning in prose, then a call of read_file.
Message tool_call(Rng& r, const std::string& id, uint32_t tokens, const TokenCounter& count) {
  return {"assistant", fill(tokens, count, [&] { return sentence(r) + " "; }),
          call_json(id, "read_file", {{"path", path(r)}}), ""};
}

Message tool_result(Rng& r, const std::string& id, uint32_t tokens, const TokenCounter& count) {
  int line = 1 + static_cast<int>(r.below(500));
  const std::string file = path(r);
  return {"tool",
          fill(tokens, count,
               [&] {
                 return file + ":" + std::to_string(line++) + ": auto " + word(r) + "_" + word(r) +
                        " = " + word(r) + "(" + word(r) + ", " + std::to_string(r.below(1000)) +
                        ");\n";
               }),
          "", id};
}

std::string user_task(Rng& r, uint32_t tokens, const TokenCounter& count) {
  return "Task: " + fill(tokens, count, [&] { return sentence(r) + " "; });
}

}  // namespace

size_t estimate_tokens(const std::string& text) { return (text.size() + 3) / 4; }

Workload cold_workload(const ColdConfig& cfg, const TokenCounter& count) {
  if (cfg.requests < 1 || cfg.tokens < 16) {
    throw std::invalid_argument("cold workload: requests must be >= 1 and tokens >= 16");
  }
  Workload w;
  for (int i = 0; i < cfg.requests; ++i) {
    Rng r(cfg.seed * 1000003 + static_cast<uint64_t>(i));
    // The request's own number first: no two prompts share a prefix past the template's head.
    const std::string head = "Request " + std::to_string(i) + " of run " +
                             std::to_string(cfg.seed) + ". Read this document and summarise it.\n";
    Step st;
    st.session = "c" + std::to_string(i);
    st.max_tokens = cfg.max_tokens;
    st.messages = {
        {"user", head + fill(cfg.tokens, count, [&] { return sentence(r) + " "; }), "", ""}};
    w.push_back(std::move(st));
  }
  return w;
}

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
  auto request = [&](const std::string& sid, const std::vector<Message>& conv) {
    return Step{Step::Kind::kRequest, sid, conv, tools, cfg.max_tokens};
  };

  // Each session's requests, sub-agents queued right after the parent request they branch from.
  std::vector<std::deque<Step>> queues(cfg.sessions);
  for (int s = 0; s < cfg.sessions; ++s) {
    const std::string sid = "s" + std::to_string(s);
    std::vector<Message> conv = {{"system", instr + environment(s / cfg.sessions_per_env), "", ""},
                                 {"user", user_task(r, cfg.user_tokens, count), "", ""}};
    int calls = 0;
    auto call_and_result = [&](std::vector<Message>& c, const std::string& who) {
      const std::string id = "call_" + who + "_" + std::to_string(calls++);
      c.push_back(tool_call(r, id, r.around(cfg.assistant_tokens), count));
      c.push_back(tool_result(r, id, r.around(cfg.tool_result_tokens), count));
    };
    for (int t = 0; t < cfg.turns; ++t) {
      if (t > 0) call_and_result(conv, sid);
      queues[s].push_back(request(sid, conv));
      if (t + 1 != cfg.subagent_after) continue;
      for (int a = 0; a < cfg.subagents; ++a) {
        auto sub = conv;
        const std::string aid = sid + ".sub" + std::to_string(a);
        const std::string task =
            "Sub-agent " + std::to_string(a) + ". " + user_task(r, cfg.user_tokens, count);
        const std::string id = "call_" + aid;
        sub.push_back({"assistant", "", call_json(id, "spawn_agent", {{"task", task}}), ""});
        sub.push_back({"tool", "Sub-agent started: " + task, "", id});
        for (int u = 0; u < cfg.subagent_turns; ++u) {
          if (u > 0) call_and_result(sub, aid);
          queues[s].push_back(request(aid, sub));
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
    w.insert(w.begin() + static_cast<long>(w.size() / 2),
             Step{Step::Kind::kRestart, "", {}, "", 0});
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
      j["messages"] = messages_json(s.messages);
      if (!s.tools.empty()) j["tools"] = nlohmann::json::parse(s.tools);
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
        w.push_back({Step::Kind::kRestart, "", {}, "", 0});
        continue;
      }
      if (type != "request") throw std::runtime_error("unknown type \"" + type + "\"");
      Step s;
      s.session = j.value("session", "s");
      s.max_tokens = j.value("max_tokens", 16);
      for (const auto& m : j.at("messages")) {
        Message x{m.at("role"), m.value("content", ""), "", m.value("tool_call_id", "")};
        if (m.contains("tool_calls")) x.tool_calls = m["tool_calls"].dump();
        s.messages.push_back(std::move(x));
      }
      if (j.contains("tools")) s.tools = j["tools"].dump();
      if (s.messages.empty()) throw std::runtime_error("a request needs at least one message");
      if (s.max_tokens < 1) throw std::runtime_error("max_tokens must be >= 1");
      w.push_back(std::move(s));
    } catch (const std::exception& e) {
      throw std::runtime_error("trace line " + std::to_string(no) + ": " + e.what());
    }
  }
  return w;
}

nlohmann::json messages_json(const std::vector<Message>& messages) {
  nlohmann::json ms = nlohmann::json::array();
  for (const auto& m : messages) {
    nlohmann::json j = {{"role", m.role}, {"content", m.content}};
    if (!m.tool_calls.empty()) j["tool_calls"] = nlohmann::json::parse(m.tool_calls);
    if (!m.tool_call_id.empty()) j["tool_call_id"] = m.tool_call_id;
    ms.push_back(std::move(j));
  }
  return ms;
}

size_t count_requests(const Workload& w) {
  size_t n = 0;
  for (const auto& s : w) n += s.kind == Step::Kind::kRequest;
  return n;
}

}  // namespace kvstash::loadgen
