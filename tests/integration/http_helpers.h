// HTTP helpers and agent-like conversations for tests that talk to a real server.
#pragma once

#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kvstash::fixtures {

using nlohmann::json;

struct Reply {
  int status = 0;
  json body;
  std::string raw;
};

// status 0 and a null body when the request got no answer at all.
inline Reply to_reply(const httplib::Result& r) {
  Reply out;
  if (!r) return out;
  out.status = r->status;
  out.raw = r->body;
  out.body = json::parse(r->body, nullptr, false);
  return out;
}

inline Reply post(int port, const std::string& path, const std::string& body) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(120, 0);
  return to_reply(c.Post(path.c_str(), body, "application/json"));
}

inline Reply get(int port, const std::string& path) {
  httplib::Client c("127.0.0.1", port);
  return to_reply(c.Get(path.c_str()));
}

inline json agent(int variant, int turns, int tail = 0) {
  std::string sys = "You are agent " + std::to_string(variant) + ". Tools:\n";
  for (int i = 0; i < 80; ++i) {
    sys += "{\"name\":\"t" + std::to_string(i) + "\",\"description\":\"opens file " +
           std::to_string(i * (variant + 3)) + " and lists it\"}\n";
  }
  json m =
      json::array({{{"role", "system"}, {"content", sys}},
                   {{"role", "user"}, {"content", "Task " + std::to_string(tail) + ": fix it."}}});
  for (int t = 1; t < turns; ++t) {
    m.push_back({{"role", "assistant"}, {"content", "step " + std::to_string(t)}});
    std::string out;
    for (int l = 0; l < 30; ++l) out += "line " + std::to_string(l * t) + " failed\n";
    m.push_back({{"role", "user"}, {"content", out}});
  }
  return m;
}

// `kvstash serve` arguments of the server tests: the tiny model's context and a disk cache in
// `cache_dir`, chunk-aligned boundaries, then `extra`.
inline std::vector<std::string> server_args(const std::string& model, const std::string& cache_dir,
                                            const std::vector<std::string>& extra = {}) {
  std::vector<std::string> a = {
      "-m", model, "--ctx-size", "16384", "--cache-dir", cache_dir, "--cache-boundary-align",
      "256"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

inline std::string chat_body(const json& msgs, int max_tokens = 8, json extra = json::object()) {
  json b = {{"messages", msgs}, {"max_tokens", max_tokens}, {"temperature", 0}};
  b.update(extra);
  return b.dump();
}

inline std::string content(const Reply& r) { return r.body["choices"][0]["message"]["content"]; }
inline int cached(const Reply& r) {
  return r.body["usage"]["prompt_tokens_details"]["cached_tokens"];
}

}  // namespace kvstash::fixtures
