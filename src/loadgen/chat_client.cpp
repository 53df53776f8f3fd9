#include "loadgen/chat_client.h"

#include <httplib.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <sstream>

namespace kvstash::loadgen {
namespace {
using Clock = std::chrono::steady_clock;
double secs(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Reads what a final chunk says about the prompt: OpenAI usage, else llama.cpp timings.
void read_usage(const nlohmann::json& j, ChatResult& r) {
  if (j.contains("usage") && j["usage"].is_object()) {
    const auto& u = j["usage"];
    if (u.contains("prompt_tokens")) r.prompt_tokens = u["prompt_tokens"].get<int>();
    if (u.contains("completion_tokens")) r.completion_tokens = u["completion_tokens"].get<int>();
    if (u.contains("prompt_tokens_details") && u["prompt_tokens_details"].is_object() &&
        u["prompt_tokens_details"].contains("cached_tokens")) {
      r.cached_tokens = u["prompt_tokens_details"]["cached_tokens"].get<int>();
    }
  }
  if (j.contains("timings") && j["timings"].is_object()) {
    const auto& t = j["timings"];
    if (t.contains("cache_n")) r.cached_tokens = t["cache_n"].get<int>();
    if (t.contains("cache_source") && t["cache_source"].is_string()) {
      r.cache_source = t["cache_source"].get<std::string>();
    }
    if (t.contains("predicted_n")) r.completion_tokens = t["predicted_n"].get<int>();
    if (t.contains("cache_n") && t.contains("prompt_n")) {
      r.prompt_tokens = t["cache_n"].get<int>() + t["prompt_n"].get<int>();
    }
  }
}
// Anthropic: message_start carries the prompt, message_delta the cache's share and the output.
void read_anthropic_usage(const nlohmann::json& u, ChatResult& r) {
  if (!u.is_object()) return;
  const int input = u.value("input_tokens", 0), cached = u.value("cache_read_input_tokens", 0);
  if (u.contains("input_tokens")) r.prompt_tokens = input + cached;
  if (u.contains("cache_read_input_tokens")) r.cached_tokens = cached;
  if (u.contains("output_tokens")) r.completion_tokens = u["output_tokens"].get<int>();
}

// Whether one SSE event of `wire` carries a token, reading what it says about usage.
bool read_event(Wire wire, const nlohmann::json& j, ChatResult& r) {
  if (wire == Wire::kMessages) {
    const std::string type = j.value("type", "");
    if (type == "message_start")
      read_anthropic_usage(j["message"].value("usage", nlohmann::json()), r);
    if (type == "message_delta") read_anthropic_usage(j.value("usage", nlohmann::json()), r);
    if (type == "error") r.error = j.dump();
    return type == "content_block_delta" ||
           (type == "content_block_start" && j["content_block"].value("type", "") == "tool_use");
  }
  if (wire == Wire::kResponses) {
    const std::string type = j.value("type", "");
    if (type == "response.completed" || type == "response.incomplete") {
      const auto& u = j["response"]["usage"];
      if (u.is_object()) {
        r.prompt_tokens = u.value("input_tokens", -1);
        r.completion_tokens = u.value("output_tokens", -1);
        if (u.contains("input_tokens_details") && u["input_tokens_details"].is_object()) {
          r.cached_tokens = u["input_tokens_details"].value("cached_tokens", -1);
        }
      }
    }
    if (type == "response.failed" || type == "error") r.error = j.dump();
    return type == "response.output_text.delta" || type == "response.reasoning_text.delta" ||
           type == "response.function_call_arguments.delta";
  }
  if (j.contains("error")) {
    r.error = j["error"].dump();
    return false;
  }
  read_usage(j, r);
  if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) return false;
  const auto& delta = j["choices"][0].value("delta", nlohmann::json::object());
  return (delta.contains("content") && delta["content"].is_string() &&
          !delta["content"].get<std::string>().empty()) ||
         (delta.contains("reasoning_content") && delta["reasoning_content"].is_string()) ||
         delta.contains("tool_calls");
}

// The workload's OpenAI tools and conversation in Anthropic's and Responses' forms.
nlohmann::json anthropic_body(const Step& s) {
  nlohmann::json system = nullptr, msgs = nlohmann::json::array();
  for (const auto& m : messages_json(s.messages)) {
    const std::string role = m["role"];
    if (role == "system" && msgs.empty()) {
      system = m["content"];
    } else if (role == "tool") {
      const nlohmann::json block = {{"type", "tool_result"},
                                    {"tool_use_id", m.value("tool_call_id", "")},
                                    {"content", m["content"]}};
      // Tool results go back in one user message (a turn's results together).
      if (!msgs.empty() && msgs.back()["role"] == "user" && msgs.back()["content"].is_array()) {
        msgs.back()["content"].push_back(block);
      } else {
        msgs.push_back({{"role", "user"}, {"content", nlohmann::json::array({block})}});
      }
    } else if (m.contains("tool_calls")) {
      nlohmann::json blocks = nlohmann::json::array();
      if (!m["content"].get<std::string>().empty()) {
        blocks.push_back({{"type", "text"}, {"text", m["content"]}});
      }
      for (const auto& c : m["tool_calls"]) {
        blocks.push_back(
            {{"type", "tool_use"},
             {"id", c["id"]},
             {"name", c["function"]["name"]},
             {"input", nlohmann::json::parse(c["function"]["arguments"].get<std::string>())}});
      }
      msgs.push_back({{"role", "assistant"}, {"content", blocks}});
    } else {
      msgs.push_back({{"role", role}, {"content", m["content"]}});
    }
  }
  nlohmann::json body = {{"messages", msgs}};
  if (!system.is_null()) body["system"] = system;
  if (!s.tools.empty()) {
    nlohmann::json tools = nlohmann::json::array();
    for (const auto& t : nlohmann::json::parse(s.tools)) {
      const auto& f = t["function"];
      tools.push_back({{"name", f["name"]},
                       {"description", f.value("description", "")},
                       {"input_schema", f.value("parameters", nlohmann::json::object())}});
    }
    body["tools"] = tools;
  }
  return body;
}

nlohmann::json responses_body(const Step& s) {
  nlohmann::json input = nlohmann::json::array();
  nlohmann::json instructions = nullptr;
  for (const auto& m : messages_json(s.messages)) {
    const std::string role = m["role"];
    if (role == "system" && input.empty() && instructions.is_null()) {
      instructions = m["content"];
    } else if (role == "tool") {
      input.push_back({{"type", "function_call_output"},
                       {"call_id", m.value("tool_call_id", "")},
                       {"output", m["content"]}});
    } else if (role == "assistant") {
      if (!m["content"].get<std::string>().empty()) {
        input.push_back({{"type", "message"},
                         {"role", "assistant"},
                         {"content", {{{"type", "output_text"}, {"text", m["content"]}}}}});
      }
      for (const auto& c : m.value("tool_calls", nlohmann::json::array())) {
        input.push_back({{"type", "function_call"},
                         {"call_id", c["id"]},
                         {"name", c["function"]["name"]},
                         {"arguments", c["function"]["arguments"]}});
      }
    } else {
      input.push_back({{"role", role}, {"content", m["content"]}});
    }
  }
  nlohmann::json body = {{"input", input}};
  if (!instructions.is_null()) body["instructions"] = instructions;
  if (!s.tools.empty()) {
    nlohmann::json tools = nlohmann::json::array();
    for (const auto& t : nlohmann::json::parse(s.tools)) {
      nlohmann::json f = t["function"];
      f["type"] = "function";
      tools.push_back(f);
    }
    body["tools"] = tools;
  }
  return body;
}
}  // namespace

Wire parse_wire(const std::string& name) {
  if (name == "chat") return Wire::kChat;
  if (name == "messages") return Wire::kMessages;
  if (name == "responses") return Wire::kResponses;
  throw std::invalid_argument("--api must be chat, messages or responses; got '" + name + "'");
}

const char* wire_name(Wire w) {
  switch (w) {
    case Wire::kMessages:
      return "messages";
    case Wire::kResponses:
      return "responses";
    case Wire::kChat:
      break;
  }
  return "chat";
}

std::pair<std::string, nlohmann::json> request_for(Wire wire, const Step& request) {
  if (wire == Wire::kMessages) {
    nlohmann::json b = anthropic_body(request);
    b["stream"] = true;
    b["max_tokens"] = request.max_tokens;
    b["temperature"] = 0;
    return {"/v1/messages", b};
  }
  if (wire == Wire::kResponses) {
    nlohmann::json b = responses_body(request);
    b["stream"] = true;
    b["max_output_tokens"] = request.max_tokens;
    b["temperature"] = 0;
    b["store"] = false;
    return {"/v1/responses", b};
  }
  nlohmann::json b = {{"stream", true},
                      {"max_tokens", request.max_tokens},
                      {"temperature", 0},
                      {"stream_options", {{"include_usage", true}}},
                      {"messages", messages_json(request.messages)}};
  if (!request.tools.empty()) b["tools"] = nlohmann::json::parse(request.tools);
  return {"/v1/chat/completions", b};
}

ChatResult stream_chat(const std::string& host, int port, const Step& request, int timeout_s,
                       const ChatExtras& extras) {
  auto [path, body] = request_for(extras.wire, request);
  body.update(extras.body);

  ChatResult r;
  httplib::Client c(host, port);
  c.set_read_timeout(timeout_s, 0);
  c.set_write_timeout(timeout_s, 0);
  std::string buf;
  Clock::time_point first{}, last{};
  const auto t0 = Clock::now();
  r.sent = t0;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  for (const auto& [name, value] : extras.headers) req.set_header(name, value);
  int status = 0;
  req.response_handler = [&](const httplib::Response& res) {
    status = res.status;
    r.served_by = res.get_header_value("X-Served-By");
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    buf.append(data, n);
    // SSE events are separated by a blank line; each carries one `data:` line here.
    for (size_t end; (end = buf.find("\n\n")) != std::string::npos;) {
      const std::string ev = buf.substr(0, end);
      buf.erase(0, end + 2);
      const size_t d = ev.find("data: ");
      if (d == std::string::npos) continue;
      const std::string payload = ev.substr(d + 6);
      if (payload == "[DONE]") continue;
      const auto j = nlohmann::json::parse(payload, nullptr, false);
      if (j.is_discarded() || !read_event(extras.wire, j, r)) continue;
      const auto now = Clock::now();
      if (r.tokens == 0) first = now;
      last = now;
      ++r.tokens;
      r.token_s.push_back(secs(t0, now));
      if (extras.on_token) extras.on_token(r.tokens);
    }
    return true;
  };
  const auto res = c.send(req);
  const auto t1 = Clock::now();
  r.total_s = secs(t0, t1);
  if (!res) {
    r.error = "no answer: " + httplib::to_string(res.error());
    return r;
  }
  if (status != 200) {
    r.error = "HTTP " + std::to_string(status) + ": " + res->body;
    return r;
  }
  if (r.tokens == 0) {
    // A model may end at once (end of generation): TTFT is then the whole request.
    r.ttft_s = r.total_s;
  } else {
    r.ttft_s = secs(t0, first);
    if (r.tokens > 1) r.decode_tok_s = (r.tokens - 1) / std::max(secs(first, last), 1e-9);
  }
  r.ok = r.error.empty();
  return r;
}

std::optional<std::string> http_get(const std::string& host, int port, const std::string& path) {
  httplib::Client c(host, port);
  c.set_connection_timeout(2, 0);
  c.set_read_timeout(10, 0);
  auto res = c.Get(path.c_str());
  if (!res || res->status != 200) return std::nullopt;
  return res->body;
}

double prometheus_value(const std::string& text, const std::string& name,
                        const std::string& labels) {
  std::istringstream in(text);
  const std::string want = labels.empty() ? name : name + "{" + labels + "}";
  double sum = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.rfind(' ');
    if (sp == std::string::npos) continue;
    const std::string key = line.substr(0, sp);
    // Without labels asked for, every sample of the name counts (e.g. all tiers).
    const bool match = labels.empty() ? key == name || key.rfind(name + "{", 0) == 0 : key == want;
    if (!match) continue;
    sum += std::stod(line.substr(sp + 1));
  }
  return sum;
}

}  // namespace kvstash::loadgen
