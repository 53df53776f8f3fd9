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
}  // namespace

ChatResult stream_chat(const std::string& host, int port, const Step& request, int timeout_s,
                       const ChatExtras& extras) {
  nlohmann::json body = {{"stream", true},
                         {"max_tokens", request.max_tokens},
                         {"temperature", 0},
                         {"stream_options", {{"include_usage", true}}},
                         {"messages", messages_json(request.messages)}};
  if (!request.tools.empty()) body["tools"] = nlohmann::json::parse(request.tools);
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
  req.path = "/v1/chat/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  int status = 0;
  req.response_handler = [&](const httplib::Response& res) {
    status = res.status;
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
      if (j.is_discarded()) continue;
      if (j.contains("error")) {
        r.error = j["error"].dump();
        continue;
      }
      read_usage(j, r);
      if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) continue;
      const auto& delta = j["choices"][0].value("delta", nlohmann::json::object());
      const bool token =
          (delta.contains("content") && delta["content"].is_string() &&
           !delta["content"].get<std::string>().empty()) ||
          (delta.contains("reasoning_content") && delta["reasoning_content"].is_string()) ||
          delta.contains("tool_calls");
      if (!token) continue;
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
