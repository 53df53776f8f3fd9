// The HTTP transport: a thin adapter between cpp-httplib and the slot pool.
//
// It owns what is HTTP's: the routes, the API key, the body limit, error statuses in each API
// dialect's shape (server/api.h), and the SSE pump. What a request means is decided elsewhere:
// parse_request (api.h) turns any dialect's body into one internal request, prepare_job
// (http_server.cpp) renders and checks it into a Job, and the dialect's ReplyEncoder (reply.h)
// writes the reply.
//
// Threads: httplib serves each connection on a thread of its pool. A generating request's thread
// submits its Job and then waits on the job's Channel: the slot thread pushes events into it
// (Job callbacks, never concurrently for one job) and the HTTP thread encodes and writes them.
// A streamed reply writes a keep-alive (an SSE comment, or the dialect's ping) whenever nothing
// was written for kKeepAliveSeconds, so clients wait through long prefills and queues. A client
// that goes away cancels its job (Job::cancelled, which the slot checks between batches and
// tokens): a stream's failed write, or the connection's socket closing under a non-streamed one;
// a request still being rendered stops rendering.
//
// Tool-call turns that stay reusable: a reply's tokens as sampled are rarely what the client's
// next request renders (tool-call JSON re-serialized, reasoning dropped, the template's own
// closing). Before the last bytes of a chat reply with tool calls go out, settle_turn renders the
// next turn's prefix (this request with the reply appended as the client will send it back, api.h
// with_reply) and queues a Job::Kind::kSettle for the reply's slot, which brings the live state
// to it ahead of any later request: the next turn then finds the whole assistant turn live. Only
// tool-call replies: their next turn is sure to resend them, while a client that answers a text
// reply with a history of its own (a scripted benchmark, an edited conversation) would find the
// previous prompt's end replaced by a turn it never sends.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cache/prefix_cache.h"
#include "engine/chat.h"
#include "engine/model.h"
#include "server/api.h"
#include "server/request_log.h"
#include "server/session_key.h"
#include "server/slot_pool.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace kvstash::server {

struct HttpConfig {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string model_id;
  int slot_ctx = 0;  // context per slot
  int slots = 1;     // requests served at once (--parallel)
  Limits limits;     // what one request may ask (/props shows them)
  // Required on every endpoint but /health, /ready and the status page's HTML (GET /, /status: it
  // holds no data; its status.json needs the key) when set (server/http_gate.h).
  std::string api_key;
  std::vector<std::string> allowed_hosts;  // Host names besides IPs and localhost (no key set)
  int n_predict = -1;  // tokens generated when a request sets no max (-1: until EOS or context end)
  int max_tokens_cap = -1;  // no request generates more, whatever it asks (-1: no cap)
  BillingHeader billing = BillingHeader::kNormalize;  // Claude Code's billing header line
  // After a chat reply with tool calls, bring its slot's live state to the reply as the client
  // will send it back (HttpServer::settle_turn), so the next turn reuses the assistant turn too.
  bool settle_turns = true;
  // Added to every request's logit biases (a request's own bias for a token wins), as
  // llama-server's --logit-bias.
  std::vector<std::pair<engine::Token, float>> logit_bias;
};

// A streamed reply says something at least this often.
inline constexpr int kKeepAliveSeconds = 2;

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
  // Readiness (GET /ready, kvstash_ready): ready from the start; not ready once a shutdown or a
  // drain began, for good. `retry_after_s` is /ready's Retry-After from then on.
  void set_not_ready(int retry_after_s);
  bool ready() const { return ready_.load(); }
  // Requests being parsed and rendered, not yet given to the pool (SlotPool::pending counts them
  // from there).
  int preparing() const { return preparing_.load(); }

 private:
  using Clock = std::chrono::steady_clock;
  struct Exchange;
  void routes();
  ApiOptions api_options() const;
  // The rendering's budget: --max-render-seconds from now, and whether req's client left (none
  // for a request of the server's own).
  engine::RenderBudget budget(const httplib::Request* req) const;
  void generate(Api api, const httplib::Request& req, const std::string& body,
                httplib::Response& res);
  void track(const std::shared_ptr<Exchange>& x, Clock::time_point arrived, int64_t arrived_ms,
             bool progress, const SessionKey& session);
  void stream(const std::shared_ptr<Exchange>& x, httplib::Response& res);
  void count_tokens(Api api, const httplib::Request& req, const std::string& body,
                    httplib::Response& res);
  void settle_turn(Api api, const std::string& body, const engine::ChatMessageOut& reply, int slot);
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
  std::atomic<bool> ready_{true};
  std::atomic<int> retry_after_s_{1};
  std::atomic<int> preparing_{0};
};

}  // namespace kvstash::server
