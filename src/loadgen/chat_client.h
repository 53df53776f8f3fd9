// One streamed chat request against kvstash or llama-server, timed from the client, over OpenAI
// chat completions, Anthropic Messages or OpenAI Responses (the same conversation in each API's
// own form: the servers render all three to the same prompt).
//
// TTFT is the time from sending the request to the first streamed token (an SSE event carrying
// text, reasoning or a tool call); the server's own figures (prompt and cached tokens) come from
// the final event's usage (and chat's llama.cpp-style `timings`, which both servers send).
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "loadgen/workload.h"

namespace kvstash::loadgen {

struct ChatResult {
  bool ok = false;
  std::string error;
  double ttft_s = 0, total_s = 0;
  int tokens = 0;              // streamed content chunks (one per token on both servers)
  double decode_tok_s = 0;     // (tokens - 1) / (time from first to last token)
  int prompt_tokens = -1;      // as the server counted them (-1: not reported)
  int cached_tokens = -1;      // prompt tokens the server did not prefill (-1: not reported)
  std::string cache_source;    // kvstash: what served them (live, ram, disk, remote)
  std::string served_by;       // the X-Served-By response header (a fleet's instance), if any
  int completion_tokens = -1;  // generated tokens as the server counted them (-1: not reported)
  // When the request was sent, and when each token chunk arrived (seconds after `sent`): the
  // concurrency benchmark lines up several streams on one clock and takes inter-token intervals.
  std::chrono::steady_clock::time_point sent{};
  std::vector<double> token_s;
};

enum class Wire { kChat, kMessages, kResponses };
// chat | messages | responses; throws std::invalid_argument.
Wire parse_wire(const std::string& name);
const char* wire_name(Wire w);
// The request's path and body in `wire`'s form (streamed, greedy, `max_tokens` tokens).
std::pair<std::string, nlohmann::json> request_for(Wire wire, const Step& request);

// What a caller adds to a request beyond its messages.
struct ChatExtras {
  Wire wire = Wire::kChat;
  nlohmann::json body = nlohmann::json::object();  // merged into the request body (e.g. logit_bias)
  std::vector<std::pair<std::string, std::string>> headers;  // request headers (e.g. a session key)
  std::function<void(int tokens)> on_token;  // after each token chunk, with the count so far
};

// POSTs the request (messages and tools) in `extras.wire`'s form with stream=true, greedy
// sampling, its `max_tokens` tokens.
ChatResult stream_chat(const std::string& host, int port, const Step& request, int timeout_s,
                       const ChatExtras& extras = {});

// GET path; nullopt when the server gives no 200 answer.
std::optional<std::string> http_get(const std::string& host, int port, const std::string& path);

// The sum of a Prometheus metric's samples (all of them, or the one with the given labels text);
// 0 if absent.
double prometheus_value(const std::string& text, const std::string& name,
                        const std::string& labels = "");

}  // namespace kvstash::loadgen
