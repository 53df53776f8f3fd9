#include "server/http_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <httplib.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <limits>
#include <mutex>

#include "server/api.h"
#include "server/chat_prompt.h"
#include "server/http_gate.h"
#include "server/listen_backlog.h"
#include "server/metrics.h"
#include "server/reply.h"
#include "server/status.h"
#include "server/status_page_html.h"
#include "util/log.h"

namespace kvstash::server {

using nlohmann::json;

namespace {

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t unix_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The prefill time the reused tokens would have cost, less the restore: by the cache's measured
// prefill rates where it has them, else at this request's own prefill speed (0 when it
// prefilled nothing to measure).
double saved_ms(const Job::Result& r, cache::PrefixCache* cache) {
  if (r.cached_tokens == 0) return 0;
  double est = std::numeric_limits<double>::quiet_NaN();
  if (cache) est = cache->rates().prefill_seconds(0, r.cached_tokens) * 1000.0;
  const uint32_t prefilled = r.prompt_tokens - r.cached_tokens;
  const double prefill_ms = r.prompt_ms - r.restore_ms;
  if (std::isnan(est)) est = prefilled > 0 ? prefill_ms / prefilled * r.cached_tokens : 0;
  return std::max(0.0, est - r.restore_ms);
}

// Events from a slot thread to the HTTP thread that answers the request: raw text pieces,
// log probabilities and progress (kText, kLogprob, kProgress), then the result.
struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<ReplyEvent> events;
  std::optional<Job::Result> done;

  void push(ReplyEvent e) {
    std::lock_guard lock(mu);
    events.push_back(std::move(e));
    cv.notify_all();
  }
  void finish(const Job::Result& r) {
    std::lock_guard lock(mu);
    done = r;
    cv.notify_all();
  }
};

std::atomic<uint64_t> g_request_id{0};

// One more in `n` from construction until release() or destruction.
class Counted {
 public:
  explicit Counted(std::atomic<int>& n) : n_(&n) { ++*n_; }
  ~Counted() { release(); }
  Counted(const Counted&) = delete;
  Counted& operator=(const Counted&) = delete;
  void release() {
    if (n_) --*n_;
    n_ = nullptr;
  }

 private:
  std::atomic<int>* n_;
};

// The dialect whose error shape a path's replies use.
Api api_of_path(const std::string& path) {
  if (path.rfind("/v1/messages", 0) == 0) return Api::kMessages;
  if (path.rfind("/v1/responses", 0) == 0 || path.rfind("/responses", 0) == 0) {
    return Api::kResponses;
  }
  return Api::kChat;
}

void send_error(httplib::Response& res, Api api, const ApiError& e) {
  res.status = e.status;
  res.set_content(dump_json(error_json(api, e)), "application/json");
}

// The socket of the connection whose peer is remote_addr:remote_port: Debian's httplib
// (0.11) does not tell a handler whether its client is still there, and the connection's socket
// stays open (and its number unique) while the handler runs. -1 if not found.
int peer_socket(const std::string& remote_addr, int remote_port) {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  int found = -1;
  while (const dirent* e = readdir(d)) {
    const int fd = std::atoi(e->d_name);
    if (fd <= 2) continue;
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) continue;
    char ip[INET6_ADDRSTRLEN] = "";
    int port = 0;
    if (a.ss_family == AF_INET) {
      const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
      inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof ip);
      port = ntohs(v4->sin_port);
    } else if (a.ss_family == AF_INET6) {
      const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
      inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof ip);
      port = ntohs(v6->sin6_port);
    }
    if (port == remote_port && remote_addr == ip) {
      found = fd;
      break;
    }
  }
  closedir(d);
  return found;
}

// Whether the client closed its end of the connection (or it broke).
bool peer_gone(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, POLLRDHUP, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

// The request body, decoded from any Content-Encoding, read up to `limit` bytes however it is
// framed (Content-Length, chunked): httplib checks only a Content-Length against its own limit.
// nullopt after answering 413 (or 400 for a body that cannot be read).
std::optional<std::string> read_body(const httplib::Request& req, httplib::Response& res,
                                     const httplib::ContentReader& reader, size_t limit) {
  std::string body;
  bool over = false;
  const bool ok = reader([&](const char* data, size_t n) {
    if (body.size() + n > limit) {
      over = true;
      return false;
    }
    body.append(data, n);
    return true;
  });
  if (ok) return body;
  res.set_header("Connection", "close");  // the rest of the body is never read
  if (over || res.status == 413) {
    send_error(res, api_of_path(req.path),
               {413, "request body too large: this server accepts at most " +
                         std::to_string(limit) + " bytes (--max-request-bytes), after decoding"});
  } else {
    send_error(res, api_of_path(req.path), {400, "the request body could not be read"});
  }
  return std::nullopt;
}

}  // namespace

// A request's Job, rendered and checked, with what its reply needs.
struct Prepared {
  std::shared_ptr<Job> job;
  std::shared_ptr<const engine::ChatParser> parser;  // chat APIs
  std::vector<std::string> client_stops;             // the request's own (Job::stop starts so)
  bool stream = false, progress = false;
};

namespace {

// The request's prompt: the chat template's rendering, or the completion's text or tokens.
// Everything the client can get wrong here is an ApiError.
std::variant<Prepared, ApiError> prepare_job(ParsedRequest& r, engine::Model& model,
                                             const engine::ChatTemplates& templates,
                                             const HttpConfig& cfg,
                                             const engine::RenderBudget& budget) {
  Prepared p;
  auto job = std::make_shared<Job>();
  job->sampling = r.gen.sampling;
  for (const auto& b : cfg.logit_bias) {
    auto& own = job->sampling.logit_bias;
    const bool set =
        std::any_of(own.begin(), own.end(), [&](const auto& x) { return x.first == b.first; });
    if (!set) own.push_back(b);
  }
  job->stop = r.gen.stop;
  p.client_stops = r.gen.stop;
  if (is_chat(r.api)) {
    try {
      ChatPrompt cp = render_chat(model, templates, r.chat, budget);
      job->prompt = std::move(cp.tokens);
      job->info = std::move(cp.info);
      job->sampling.grammar = std::move(cp.render.grammar);
      job->stop.insert(job->stop.end(), cp.render.stops.begin(), cp.render.stops.end());
      p.parser = std::move(cp.render.parser);
    } catch (const engine::ChatError& e) {
      return ApiError{400, e.what()};
    } catch (const engine::ChatCancelled& e) {
      log::info("request cancelled while its conversation was rendered: the client went away");
      return ApiError{400, e.what()};  // nobody reads it
    } catch (const std::exception& e) {
      return ApiError{400, std::string("cannot apply the chat template: ") + e.what()};
    }
  } else {
    job->prompt =
        !r.prompt_tokens.empty() ? r.prompt_tokens : model.tokenize(r.prompt_text, true, true);
    if (!r.gen.json_schema.empty()) {
      try {
        job->sampling.grammar.grammar = engine::grammar_from_json_schema(r.gen.json_schema);
      } catch (const engine::ChatError& e) {
        return ApiError{400, e.what()};
      }
    }
  }
  if (job->prompt.empty()) return ApiError{400, "the prompt is empty"};
  if (job->prompt.size() >= static_cast<size_t>(cfg.slot_ctx)) {
    return ApiError{400, "the prompt has " + std::to_string(job->prompt.size()) +
                             " tokens; the context holds " + std::to_string(cfg.slot_ctx) +
                             " per slot"};
  }
  if (cfg.limits.prompt_tokens > 0 &&
      job->prompt.size() > static_cast<size_t>(cfg.limits.prompt_tokens)) {
    return ApiError{400, "the prompt has " + std::to_string(job->prompt.size()) +
                             " tokens; this server accepts at most " +
                             std::to_string(cfg.limits.prompt_tokens) + " (--max-prompt-tokens)"};
  }
  if (!job->sampling.grammar.grammar.empty()) {
    try {  // a grammar llama.cpp cannot parse is the client's error, found before any work
      job->sampler = std::make_unique<engine::Sampler>(model, job->sampling, cfg.slot_ctx);
    } catch (const std::invalid_argument& e) {
      return ApiError{400, std::string("invalid grammar: ") + e.what()};
    }
  }
  job->scope = r.gen.scope;
  if (!job->info.complete) {
    // Its batches break elsewhere than the conversation's other prompts': served, not cached.
    job->scope = cache::Scope{cache::Scope::Kind::kOff, 0};
    log::warn(
        "the conversation's message starts were not all found within --max-render-seconds; "
        "this request is served without the cache (the next ones render the rest)");
  }
  job->info.salt = r.gen.cache_salt;
  job->max_tokens = r.gen.max_tokens >= 0 ? r.gen.max_tokens : cfg.n_predict;
  if (cfg.max_tokens_cap >= 0 && (job->max_tokens < 0 || job->max_tokens > cfg.max_tokens_cap)) {
    job->max_tokens = cfg.max_tokens_cap;
  }
  job->logprobs = r.gen.logprobs;
  p.stream = r.gen.stream;
  p.progress = r.gen.return_progress && r.gen.stream;
  p.job = std::move(job);
  return p;
}

}  // namespace

HttpServer::HttpServer(engine::Model& model, const engine::ChatTemplates& templates, SlotPool& pool,
                       cache::PrefixCache* cache, HttpConfig cfg, json props)
    : model_(model),
      templates_(templates),
      pool_(pool),
      cache_(cache),
      cfg_(std::move(cfg)),
      props_(std::move(props)),
      http_(std::make_unique<httplib::Server>()),
      requests_(std::make_shared<RequestLog>()),
      started_ms_(unix_now_ms()) {
  http_->set_payload_max_length(cfg_.limits.body_bytes);  // a Content-Length beyond: 413 at once
  // httplib serves each connection on a thread of a pool sized by the core count (8 on a small
  // machine, 15 on 16 cores), and a connection beyond it waits in a queue: with more slots than
  // threads, the last streams would start only when others end. So every slot gets a thread, with
  // room for the requests that never hold a slot (/health, /metrics, the status page) and for
  // those waiting for a slot.
  const size_t threads = std::max<size_t>(CPPHTTPLIB_THREAD_POOL_COUNT,
                                          2 * static_cast<size_t>(std::max(cfg_.slots, 1)) + 4);
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  routes();
}

HttpServer::~HttpServer() = default;

bool HttpServer::bind() {
  port_ = cfg_.port == 0 ? http_->bind_to_any_port(cfg_.host) : cfg_.port;
  if (cfg_.port != 0 && !http_->bind_to_port(cfg_.host, cfg_.port)) port_ = -1;
  if (port_ <= 0) {
    log::error("cannot listen on " + cfg_.host + ":" + std::to_string(cfg_.port));
    return false;
  }
  if (!raise_listen_backlog(port_)) {
    log::warn("could not raise the listen backlog: connections arriving together may be dropped");
  }
  log::info("listening on http://" + cfg_.host + ":" + std::to_string(port_));
  return true;
}

void HttpServer::serve() { http_->listen_after_bind(); }
void HttpServer::stop() { http_->stop(); }

void HttpServer::set_not_ready(int retry_after_s) {
  retry_after_s_ = std::max(1, retry_after_s);
  ready_ = false;
}

void HttpServer::routes() {
  auto& s = *http_;
  // What went wrong inside is the log's business: the client learns that it did.
  s.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        log::error(req.method + " " + req.path + ": " + what);
        send_error(res, api_of_path(req.path),
                   {500, "internal error while serving the request (the server log says more)"});
      });
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404)
      send_error(res, api_of_path(req.path), {404, "no endpoint " + req.method + " " + req.path});
    else if (res.status == 413) {
      // httplib caps form-encoded bodies at 8 KiB: `curl -d` sends that content type.
      const bool form =
          req.get_header_value("Content-Type").find("x-www-form-urlencoded") != std::string::npos;
      send_error(res, api_of_path(req.path),
                 {413, form ? "request body too large for Content-Type "
                              "application/x-www-form-urlencoded; send application/json"
                            : "request body too large"});
    } else
      send_error(res, api_of_path(req.path),
                 {res.status, "request failed with HTTP " + std::to_string(res.status)});
  });

  // The gate (server/http_gate.h): API key, Host and Origin, body types.
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    using H = httplib::Server::HandlerResponse;
    const GateRequest g{req.method,
                        req.path,
                        req.get_header_value("Host"),
                        req.get_header_value("Origin"),
                        req.get_header_value("Content-Type"),
                        req.get_header_value("Authorization"),
                        req.get_header_value("X-Api-Key"),
                        req.get_header_value("api-key")};
    const auto refused = gate(g, {cfg_.api_key, cfg_.allowed_hosts});
    if (!refused) return H::Unhandled;
    send_error(res, api_of_path(req.path), *refused);
    return H::Handled;
  });
  // Liveness: the process serves HTTP.
  s.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  // Readiness: the server takes new work (a balancer's health check). It listens only once the
  // model is loaded, so a server still loading refuses the connection.
  s.Get("/ready", [this](const httplib::Request&, httplib::Response& res) {
    if (ready_) return res.set_content(R"({"status":"ready"})", "application/json");
    res.status = 503;
    res.set_header("Retry-After", std::to_string(retry_after_s_.load()));
    res.set_content(R"({"status":"draining"})", "application/json");
  });
  s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    json m = {{"object", "list"},
              {"data", json::array({{{"id", cfg_.model_id},
                                     {"object", "model"},
                                     {"created", unix_now()},
                                     {"owned_by", "kvstash"}}})}};
    res.set_content(dump_json(m), "application/json");
  });
  s.Get("/props", [this](const httplib::Request&, httplib::Response& res) {
    json p = props_;
    const Limits& l = cfg_.limits;
    p["limits"] = {{"body_bytes", l.body_bytes},
                   {"json_depth", l.json_depth},
                   {"messages", l.messages},
                   {"tools", l.tools},
                   {"grammar_bytes", l.grammar_bytes},
                   {"prompt_tokens", l.prompt_tokens > 0 ? l.prompt_tokens : cfg_.slot_ctx},
                   {"queue", l.queue},
                   {"render_seconds", l.render_seconds},
                   {"stop_bytes", kMaxStopBytes},
                   {"grammar_depth", kMaxGrammarDepth}};
    if (cache_) {
      const auto st = cache_->stats();
      p["cache"]["disk_bytes"] = st.disk_bytes;
      p["cache"]["ram_bytes"] = st.ram_bytes;
      p["cache"]["vram_bytes"] = st.vram_bytes;
      p["cache"]["entries"] = st.entries;
      p["cache"]["chunks"] = st.chunks;
    }
    res.set_content(dump_json(p), "application/json");
  });
  s.Get("/slots", [this](const httplib::Request&, httplib::Response& res) {
    json a = json::array();
    for (const auto& sl : pool_.slots()) {
      a.push_back({{"id", sl.id},
                   {"is_processing", sl.busy},
                   {"n_ctx", cfg_.slot_ctx},
                   {"live_tokens", sl.live_tokens},
                   {"requests", sl.requests}});
    }
    res.set_content(dump_json(a), "application/json");
  });
  auto page = [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-cache");
    res.set_content(kStatusPageHtml, "text/html; charset=utf-8");
  };
  s.Get("/", page);
  s.Get("/status", page);
  s.Get("/status.json", [this](const httplib::Request&, httplib::Response& res) {
    const StatusInfo info{cfg_.model_id, cfg_.slot_ctx, started_ms_};
    res.set_header("Cache-Control", "no-store");
    res.set_content(dump_json(status_json(pool_, cache_, *requests_, info)), "application/json");
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(
        prometheus_metrics(pool_, cache_, static_cast<int>(pool_.slots().size()), ready_),
        "text/plain; version=0.0.4");
  });
  // Every body is read by read_body, under the limit however it is framed or encoded.
  auto post = [this, &s](const char* path, auto handler) {
    s.Post(path, [this, handler](const httplib::Request& req, httplib::Response& res,
                                 const httplib::ContentReader& reader) {
      auto body = read_body(req, res, reader, cfg_.limits.body_bytes);
      if (body) handler(req, *body, res);
    });
  };
  auto parse_small = [this](const std::string& body) {
    try {
      return json(parse_json_body(body, cfg_.limits.json_depth));
    } catch (const std::invalid_argument&) {
      return json();
    }
  };
  post("/tokenize", [this, parse_small](const httplib::Request&, const std::string& body,
                                        httplib::Response& res) {
    json j = parse_small(body);
    if (!j.is_object() || !j.contains("content") || !j["content"].is_string()) {
      return send_error(res, Api::kChat, {400, "'content' must be a string"});
    }
    const bool add_special = j.value("add_special", false);
    res.set_content(dump_json({{"tokens", model_.tokenize(j["content"], add_special, true)}}),
                    "application/json");
  });
  post("/detokenize", [this, parse_small](const httplib::Request&, const std::string& body,
                                          httplib::Response& res) {
    json j = parse_small(body);
    if (!j.is_object() || !j.contains("tokens") || !j["tokens"].is_array()) {
      return send_error(res, Api::kChat, {400, "'tokens' must be an array of token ids"});
    }
    std::vector<engine::Token> toks;
    for (const auto& t : j["tokens"]) {
      if (!t.is_number_integer() || t.get<long long>() < 0 ||
          t.get<long long>() >= model_.n_vocab()) {
        return send_error(
            res, Api::kChat,
            {400, "'tokens' must hold integers in [0, " + std::to_string(model_.n_vocab()) + ")"});
      }
      toks.push_back(t.get<engine::Token>());
    }
    res.set_content(dump_json({{"content", model_.detokenize(toks)}}), "application/json");
  });

  // The generating endpoints and their token counters, with llama-server's aliases.
  const std::pair<const char*, Api> generating[] = {
      {"/v1/chat/completions", Api::kChat},    {"/chat/completions", Api::kChat},
      {"/v1/completions", Api::kCompletions},  {"/completion", Api::kLlamaCompletion},
      {"/completions", Api::kLlamaCompletion}, {"/v1/messages", Api::kMessages},
      {"/v1/responses", Api::kResponses},      {"/responses", Api::kResponses}};
  for (const auto& [path, api] : generating) {
    post(path, [this, api = api](const httplib::Request& req, const std::string& body,
                                 httplib::Response& res) { generate(api, req, body, res); });
  }
  const std::pair<const char*, Api> counting[] = {{"/v1/messages/count_tokens", Api::kMessages},
                                                  {"/v1/responses/input_tokens", Api::kResponses},
                                                  {"/responses/input_tokens", Api::kResponses},
                                                  {"/v1/chat/completions/input_tokens", Api::kChat},
                                                  {"/chat/completions/input_tokens", Api::kChat}};
  for (const auto& [path, api] : counting) {
    post(path, [this, api = api](const httplib::Request& req, const std::string& body,
                                 httplib::Response& res) { count_tokens(api, req, body, res); });
  }
}

void HttpServer::count_tokens(Api api, const httplib::Request& req, const std::string& body,
                              httplib::Response& res) {
  auto parsed = parse_request(api, body, api_options());
  if (auto* e = std::get_if<ApiError>(&parsed)) return send_error(res, api, *e);
  auto& r = std::get<ParsedRequest>(parsed);
  try {
    const ChatPrompt cp = render_chat(model_, templates_, r.chat, budget(&req));
    json out = {{"input_tokens", cp.tokens.size()}};
    if (api == Api::kResponses) out["object"] = "response.input_tokens";
    res.set_content(dump_json(out), "application/json");
  } catch (const std::exception& e) {
    send_error(res, api, {400, e.what()});
  }
}

void HttpServer::settle_turn(Api api, const std::string& body, const engine::ChatMessageOut& reply,
                             int slot) {
  try {
    const auto next = with_reply(api, nlohmann::ordered_json::parse(body), reply);
    auto parsed = parse_request(api, next.dump(), api_options());
    if (auto* e = std::get_if<ApiError>(&parsed)) throw std::runtime_error(e->message);
    engine::ChatInput in = std::get<ParsedRequest>(parsed).chat;
    const auto& gen = std::get<ParsedRequest>(parsed).gen;
    // The reply, then a placeholder for what the client sends next (its first tool result, or a
    // user message): the boundary after the reply is where the next turn's prompt resumes.
    auto msgs = nlohmann::ordered_json::parse(in.messages_json);
    if (reply.tool_calls.empty()) {
      msgs.push_back({{"role", "user"}, {"content", "A"}});
    } else {
      msgs.push_back(
          {{"role", "tool"}, {"tool_call_id", reply.tool_calls[0].id}, {"content", "A"}});
    }
    in.messages_json = msgs.dump();
    in.add_generation_prompt = false;
    in.tool_choice = "none";  // the prompt only: no grammar
    in.tool_name.clear();
    in.json_schema.clear();
    in.grammar.clear();
    const ChatPrompt cp = render_chat(model_, templates_, in, budget(nullptr));
    if (!cp.render.complete) return;  // the next turn is not cached either
    const auto& ends = cp.render.prefix_ends;
    if (ends.size() < 2 || ends[ends.size() - 2] == 0 || cp.info.boundaries.empty()) return;
    const uint32_t cut =
        cp.info.boundaries.back();  // the reply's end (the last message's is not one)
    if (cut >= static_cast<uint32_t>(cfg_.slot_ctx)) return;
    auto job = std::make_shared<Job>();
    job->kind = Job::Kind::kSettle;
    job->only_slot = slot;
    job->prompt.assign(cp.tokens.begin(), cp.tokens.begin() + cut);
    job->info.boundaries = cp.info.boundaries;
    job->info.anchor = std::min(cp.info.anchor, cut);
    job->scope = gen.scope;
    job->info.salt = gen.cache_salt;
    job->max_tokens = 0;
    job->on_done = [](const Job::Result&) {};
    pool_.submit(std::move(job));
  } catch (const std::exception& e) {
    // The next turn then reuses what matches, as without settling.
    log::warn(std::string("cannot settle the turn as the client sends it back: ") + e.what());
  }
}

// One request on its way through: the job, the events the slot sends, and the reply being
// encoded. Shared by the handler, the job's callbacks and the stream's provider (which may run
// after the handler returned).
struct HttpServer::Exchange {
  Exchange(Api a, std::shared_ptr<Job> j, std::unique_ptr<ReplyEncoder> e, ReplyAssembler r,
           std::vector<std::string> s, std::string b)
      : api(a),
        job(std::move(j)),
        enc(std::move(e)),
        assembler(std::move(r)),
        stops(std::move(s)),
        body(std::move(b)) {}

  Api api;
  std::shared_ptr<Job> job;
  Channel ch;
  std::unique_ptr<ReplyEncoder> enc;
  ReplyAssembler assembler;
  std::vector<std::string> stops;  // the client's own stop strings
  std::string body;                // the request, for settling a tool-call turn ("" if not)

  // The reply is over: the last parse, the settled turn; streaming, the events the last parse
  // adds (a whole reply is encoded from the message alone).
  std::string finish(HttpServer& server, const Job::Result& d, bool streaming) {
    std::string out;
    for (const auto& e : assembler.finish()) {
      if (streaming) out += enc->event(e);
    }
    const ReplyMessage& m = assembler.message();
    if (!body.empty() && d.end != JobEnd::kCancelled && !m.tool_calls.empty()) {
      server.settle_turn(api, body, {m.content, m.reasoning, m.tool_calls}, d.slot);
    }
    return out;
  }
};

ApiOptions HttpServer::api_options() const { return {model_.n_vocab(), cfg_.billing, cfg_.limits}; }

engine::RenderBudget HttpServer::budget(const httplib::Request* req) const {
  engine::RenderBudget b;
  b.deadline = Clock::now() +
               std::chrono::milliseconds(static_cast<int64_t>(cfg_.limits.render_seconds * 1000));
  if (!req) return b;
  // The socket is looked up on the first question (a rendering or a wait that lasts), not for
  // every request; the stripes rendering prefixes may ask together.
  struct Peer {
    std::once_flag found;
    int fd = -1;
  };
  b.cancelled = [peer = std::make_shared<Peer>(), addr = req->remote_addr,
                 port = req->remote_port] {
    std::call_once(peer->found, [&] { peer->fd = peer_socket(addr, port); });
    return peer_gone(peer->fd);
  };
  return b;
}

void HttpServer::generate(Api api, const httplib::Request& req, const std::string& body,
                          httplib::Response& res) {
  const auto arrived = std::chrono::steady_clock::now();
  const int64_t arrived_ms = unix_now_ms();
  Counted preparing(preparing_);  // until submitted: a drain waits for requests being rendered
  auto parsed = parse_request(api, body, api_options());
  if (auto* e = std::get_if<ApiError>(&parsed)) return send_error(res, api, *e);
  const SessionKey session = session_key(
      {req.get_header_value("X-Claude-Code-Session-Id"), req.get_header_value("session-id")},
      std::get<ParsedRequest>(parsed).session_fields);
  const engine::RenderBudget rb = budget(&req);
  auto prepared = prepare_job(std::get<ParsedRequest>(parsed), model_, templates_, cfg_, rb);
  if (auto* e = std::get_if<ApiError>(&prepared)) return send_error(res, api, *e);
  Prepared p = std::move(std::get<Prepared>(prepared));

  auto x = std::make_shared<Exchange>(
      api, p.job,
      make_encoder({api, std::to_string(++g_request_id), unix_now(), cfg_.model_id,
                    static_cast<uint32_t>(p.job->prompt.size())}),
      ReplyAssembler(p.parser), std::move(p.client_stops),
      cfg_.settle_turns && is_chat(api) ? body : std::string());
  track(x, arrived, arrived_ms, p.progress, session);
  pool_.submit(x->job);
  preparing.release();
  {
    // Refused at once (a full queue, shutting down): an error status, streamed or not.
    std::lock_guard lock(x->ch.mu);
    if (x->ch.done && x->ch.done->end == JobEnd::kError) {
      if (x->ch.done->error_status == 503) res.set_header("Retry-After", "1");
      return send_error(res, api, {x->ch.done->error_status, x->ch.done->error});
    }
  }
  if (p.stream) return stream(x, res);

  // Not streamed: the whole reply first, so its HTTP status is the outcome's. A client that
  // leaves cancels the job, as a stream's does.
  std::unique_lock lock(x->ch.mu);
  while (!x->ch.cv.wait_for(lock, std::chrono::milliseconds(200),
                            [&] { return x->ch.done.has_value(); })) {
    if (!x->job->cancelled && rb.cancelled()) x->job->cancelled = true;
  }
  for (auto& ev : x->ch.events) {
    if (ev.kind == ReplyEvent::Kind::kText) x->assembler.collect(ev.text);
    if (ev.kind == ReplyEvent::Kind::kLogprob) x->assembler.logprob(std::move(ev.data));
  }
  const Job::Result d = *x->ch.done;
  lock.unlock();
  if (d.end == JobEnd::kError) return send_error(res, api, {d.error_status, d.error});
  if (d.end == JobEnd::kCancelled) {  // the server is stopping (or nobody is listening)
    res.set_header("Retry-After", "1");
    return send_error(res, api, {503, "the server is shutting down; the request was cancelled"});
  }
  x->finish(*this, d, false);
  const ReplyMessage& m = x->assembler.message();
  res.set_content(dump_json(x->enc->whole(reply_end(d, x->stops, m), m)), "application/json");
}

// The job's callbacks: its events into the exchange's channel, its record into the request log
// (the status page: slot, progress, first token, outcome). They run on the slot thread; on_text,
// on_logprob and on_done of one job never run concurrently.
void HttpServer::track(const std::shared_ptr<Exchange>& x, Clock::time_point arrived,
                       int64_t arrived_ms, bool progress, const SessionKey& session) {
  Job& job = *x->job;
  const auto log = requests_;
  const uint64_t rid = log->begin(api_name(x->api), job.prompt.size(), arrived_ms, session.key);
  auto first_token = std::make_shared<std::optional<Clock::time_point>>();
  auto saw_token = [log, rid, first_token] {
    if (first_token->has_value()) return;
    *first_token = Clock::now();
    log->first_token(rid);
  };
  // The exchange owns the job: its callbacks hold the exchange weakly.
  const std::weak_ptr<Exchange> wx = x;
  auto push = [wx](ReplyEvent e) {
    if (auto x = wx.lock()) x->ch.push(std::move(e));
  };
  job.on_start = [log, rid](int slot) { log->started(rid, slot); };
  job.on_progress = [push, progress, arrived, log, rid](int done, int total, int cached) {
    log->progress(rid, done, cached);
    if (!progress) return;
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - arrived).count();
    push({ReplyEvent::Kind::kProgress,
          "",
          -1,
          "",
          "",
          {{"total", total}, {"cache", cached}, {"processed", done}, {"time_ms", ms}}});
  };
  job.on_text = [push, saw_token](const std::string& piece) {
    saw_token();
    push({ReplyEvent::Kind::kText, piece, -1, "", "", nullptr});
  };
  job.on_logprob = [push, this, saw_token](engine::Token t, float lp,
                                           const std::vector<engine::TokenProb>& top) {
    saw_token();
    json tops = json::array();
    for (const auto& p : top) {
      tops.push_back(
          {{"id", p.token}, {"token", model_.token_text(p.token)}, {"logprob", p.logprob}});
    }
    push({ReplyEvent::Kind::kLogprob,
          "",
          -1,
          "",
          "",
          {{"id", t}, {"token", model_.token_text(t)}, {"logprob", lp}, {"top", tops}}});
  };
  job.on_done = [wx, log, rid, arrived, arrived_ms, first_token, api = x->api, cache = cache_,
                 n_prompt = static_cast<uint32_t>(job.prompt.size()),
                 session](const Job::Result& d) {
    auto since = [&](Clock::time_point t) {
      return std::chrono::duration<double, std::milli>(t - arrived).count();
    };
    RequestRecord r;
    r.id = rid;
    r.endpoint = api_name(api);
    r.started_ms = arrived_ms;
    r.finished_ms = unix_now_ms();
    r.slot = d.slot;
    r.prompt_tokens = n_prompt;  // also for a job refused before a slot saw it
    r.cached_tokens = d.cached_tokens;
    r.completion_tokens = d.completion_tokens;
    r.cache_source = d.cache_source;
    r.restore_ms = d.restore_ms;
    r.prefill_ms = std::max(0.0, d.prompt_ms - d.restore_ms);
    r.total_ms = since(Clock::now());
    r.ttft_ms = first_token->has_value() ? since(**first_token) : r.total_ms;
    r.saved_ms = saved_ms(d, cache);
    r.finish_reason = job_end_name(d.end);
    for (const auto& st : d.stores) {
      r.stores.push_back({cache::reason_name(st.reason), st.outcome, st.tokens, st.bytes});
    }
    r.session = session.key;
    r.session_source = session_source_name(session.source);
    log::info(request_line(r));
    log->finish(std::move(r));
    if (auto x = wx.lock()) x->ch.finish(d);
  };
}

// The SSE pump: the dialect's first events at once, then the events as the slot sends them, a
// keep-alive after kKeepAliveSeconds of silence, and the end. A write that fails (the client
// left) cancels the job.
void HttpServer::stream(const std::shared_ptr<Exchange>& x, httplib::Response& res) {
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, x, begun = false, last_write = Clock::now()](size_t, httplib::DataSink& sink) mutable {
        auto write = [&](const std::string& bytes) {
          if (bytes.empty()) return true;
          last_write = Clock::now();
          if (!sink.write(bytes.data(), bytes.size())) {
            x->job->cancelled = true;
            return false;
          }
          return true;
        };
        if (!begun) {
          begun = true;
          if (!write(x->enc->begin())) return false;
        }
        std::unique_lock lock(x->ch.mu);
        x->ch.cv.wait_for(lock, std::chrono::milliseconds(200),
                          [&] { return !x->ch.events.empty() || x->ch.done; });
        std::deque<ReplyEvent> events;
        events.swap(x->ch.events);
        const auto done = x->ch.done;
        lock.unlock();
        std::string out;
        for (auto& ev : events) {
          if (ev.kind == ReplyEvent::Kind::kText) {
            for (const auto& e : x->assembler.text(ev.text)) out += x->enc->event(e);
          } else if (ev.kind == ReplyEvent::Kind::kLogprob) {
            out += x->enc->event(x->assembler.logprob(std::move(ev.data)));
          } else {
            out += x->enc->event(ev);
          }
        }
        if (!write(out)) return false;
        if (!done) {
          if (Clock::now() - last_write >= std::chrono::seconds(kKeepAliveSeconds)) {
            return write(x->enc->keepalive());
          }
          if (!sink.is_writable()) {
            x->job->cancelled = true;
            return false;
          }
          return true;
        }
        if (done->end == JobEnd::kError) {
          write(x->enc->error({done->error_status, done->error}));
        } else {
          std::string last = x->finish(*this, *done, true);
          const ReplyMessage& m = x->assembler.message();
          last += x->enc->end(reply_end(*done, x->stops, m), m);
          if (!write(last)) return false;
        }
        sink.done();
        return true;
      },
      [job = x->job](bool success) {
        if (!success) job->cancelled = true;
      });
}

}  // namespace kvstash::server
