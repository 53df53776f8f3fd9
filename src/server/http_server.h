// The HTTP API: OpenAI-compatible and llama.cpp-style endpoints over the slot pool.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cache/prefix_cache.h"
#include "engine/chat.h"
#include "engine/model.h"
#include "server/request_log.h"
#include "server/slot_pool.h"

namespace httplib {
class Server;
}

namespace kvstash::server {

struct HttpConfig {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string model_id;
  int slot_ctx = 0;                     // context per slot
  int slots = 1;                        // requests served at once (--parallel)
  size_t max_body_bytes = 64ull << 20;  // request size limit
  // Required on every endpoint but /health and the status page's HTML (GET /, /status: it holds
  // no data; its status.json needs the key) when set.
  std::string api_key;
  int n_predict = -1;  // tokens generated when a request sets no max (-1: until EOS or context end)
};

class HttpServer {
 public:
  // `props` is what GET /props shows besides the live fields.
  HttpServer(engine::Model& model, const engine::ChatTemplates& templates, SlotPool& pool,
             cache::PrefixCache* cache, HttpConfig cfg, nlohmann::json props);
  ~HttpServer();
  // Binds; returns false (and logs) if the address is not available. Then serves until stop().
  bool bind();
  void serve();
  void stop();
  int port() const { return port_; }

 private:
  void routes();
  engine::Model& model_;
  const engine::ChatTemplates& templates_;
  SlotPool& pool_;
  cache::PrefixCache* cache_;
  HttpConfig cfg_;
  nlohmann::json props_;
  std::unique_ptr<httplib::Server> http_;
  int port_ = 0;
  // Shared with the jobs' callbacks, which may outlive this object (the pool's shutdown answers
  // queued jobs after the server stopped).
  std::shared_ptr<RequestLog> requests_;
  int64_t started_ms_ = 0;
};

}  // namespace kvstash::server
