#include "server/http_server.h"

#include <httplib.h>

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
#include "server/listen_backlog.h"
#include "server/metrics.h"
#include "server/status.h"
#include "server/status_page_html.h"
#include "util/log.h"

namespace kvstash::server {

using nlohmann::json;

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(dump(error_json(e)), "application/json");
}

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

const char* endpoint_name(Endpoint ep) {
  switch (ep) {
    case Endpoint::kChat:
      return "chat";
    case Endpoint::kCompletions:
      return "completions";
    case Endpoint::kLlamaCompletion:
      return "completion";
  }
  return "";
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

// The page itself holds no data, so it loads without the API key (it then asks for it).
bool is_status_page(const httplib::Request& req) {
  return (req.method == "GET" || req.method == "HEAD") &&
         (req.path == "/" || req.path == "/status");
}

// Events from a slot thread to the HTTP thread that answers the request.
struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<json> events;  // progress and text pieces
  std::optional<Job::Result> done;

  void push(json e) {
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

// What a reply has produced so far: the generated text, its parse into content, reasoning and
// tool calls (chat), and the log probabilities of its tokens.
struct ReplyState {
  std::optional<engine::ChatParser::Reply> chat;
  std::string text;
  json logprobs = json::array();

  explicit ReplyState(std::shared_ptr<const engine::ChatParser> p) {
    if (p) chat.emplace(std::move(p));
  }
  // Non-streamed: collect an event.
  void take(const json& ev) {
    if (ev.contains("text")) text += ev["text"].get<std::string>();
    if (ev.contains("logprob")) logprobs.push_back(ev["logprob"]);
  }
  // Chat: the parsed message, once all text is in.
  const engine::ChatMessageOut& finish() {
    chat->update(text, false);
    text.clear();
    return chat->message();
  }
};

// OpenAI's delta of one parsed change.
json delta_json(const engine::ChatDelta& d) {
  json delta = json::object();
  if (!d.content.empty()) delta["content"] = d.content;
  if (!d.reasoning_content.empty()) delta["reasoning_content"] = d.reasoning_content;
  if (d.tool_index >= 0) {
    json tc = {{"index", d.tool_index}};
    if (!d.tool.id.empty()) {
      tc["id"] = d.tool.id;
      tc["type"] = "function";
    }
    json fn = {{"arguments", d.tool.arguments}};
    if (!d.tool.name.empty()) fn["name"] = d.tool.name;
    tc["function"] = fn;
    delta["tool_calls"] = json::array({tc});
  }
  return delta;
}

std::string finish_reason(const Job::Result& d, bool tool_calls) {
  if (d.finish_reason == "length") return "length";
  return tool_calls ? "tool_calls" : "stop";
}

// Log probabilities in each endpoint's shape.
json logprobs_json(Endpoint ep, const json& entries) {
  if (ep == Endpoint::kChat) {
    json content = json::array();
    for (const auto& e : entries) {
      json top = json::array();
      for (const auto& t : e["top"])
        top.push_back({{"token", t["token"]}, {"logprob", t["logprob"]}});
      content.push_back({{"token", e["token"]}, {"logprob", e["logprob"]}, {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  if (ep == Endpoint::kCompletions) {
    json tokens = json::array(), lps = json::array(), tops = json::array();
    for (const auto& e : entries) {
      tokens.push_back(e["token"]);
      lps.push_back(e["logprob"]);
      json top = json::object();
      for (const auto& t : e["top"]) top[t["token"].get<std::string>()] = t["logprob"];
      tops.push_back(top);
    }
    return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}};
  }
  json out = json::array();  // llama.cpp's completion_probabilities
  for (const auto& e : entries) {
    json top = json::array();
    for (const auto& t : e["top"]) {
      top.push_back({{"id", t["id"]}, {"token", t["token"]}, {"logprob", t["logprob"]}});
    }
    out.push_back(
        {{"id", e["id"]}, {"token", e["token"]}, {"logprob", e["logprob"]}, {"top_logprobs", top}});
  }
  return out;
}

// The JSON shapes of one request's replies.
struct ReplyShape {
  Endpoint ep;
  std::string id;
  int64_t created;
  std::string model_id;

  json usage(const Job::Result& d) const {
    return {{"prompt_tokens", d.prompt_tokens},
            {"completion_tokens", d.completion_tokens},
            {"total_tokens", d.prompt_tokens + d.completion_tokens},
            {"prompt_tokens_details", {{"cached_tokens", d.cached_tokens}}}};
  }
  static json timings(const Job::Result& d) {
    return {{"cache_n", d.cached_tokens},     {"prompt_n", d.prompt_tokens - d.cached_tokens},
            {"prompt_ms", d.prompt_ms},       {"restore_ms", d.restore_ms},
            {"cache_source", d.cache_source}, {"predicted_n", d.completion_tokens},
            {"predicted_ms", d.generation_ms}};
  }
  json envelope(json choices, bool whole) const {
    return {{"id", id},
            {"object", ep == Endpoint::kChat ? (whole ? "chat.completion" : "chat.completion.chunk")
                                             : "text_completion"},
            {"created", created},
            {"model", model_id},
            {"choices", std::move(choices)}};
  }
  // One streamed chunk: a chat delta, or a piece of completion text.
  json chunk(const json& delta_or_text, const json& logprobs = nullptr) const {
    if (ep == Endpoint::kLlamaCompletion) {
      json c = {{"content", delta_or_text}, {"stop", false}};
      if (!logprobs.is_null()) c["completion_probabilities"] = logprobs;
      return c;
    }
    json choice = ep == Endpoint::kChat ? json{{"index", 0}, {"delta", delta_or_text}}
                                        : json{{"index", 0}, {"text", delta_or_text}};
    choice["finish_reason"] = nullptr;
    if (!logprobs.is_null()) choice["logprobs"] = logprobs;
    return envelope(json::array({choice}), false);
  }
  // The chunks one event becomes while streaming (`partial` false: the reply has ended).
  std::vector<json> stream_event(const json& ev, ReplyState& st, bool partial) const {
    std::vector<json> out;
    if (ev.contains("prompt_progress")) {
      json c = ep == Endpoint::kLlamaCompletion ? json{{"content", ""}, {"stop", false}}
                                                : envelope(json::array(), false);
      c["prompt_progress"] = ev["prompt_progress"];
      out.push_back(c);
    } else if (ev.contains("logprob")) {
      out.push_back(chunk(ep == Endpoint::kChat ? json::object() : json(""),
                          logprobs_json(ep, json::array({ev["logprob"]}))));
    } else if (ev.contains("text")) {
      const std::string text = ev["text"];
      if (!st.chat) {
        if (!text.empty()) out.push_back(chunk(text));
      } else {
        for (const auto& d : st.chat->update(text, partial)) out.push_back(chunk(delta_json(d)));
      }
    }
    return out;
  }
  json final_chunk(const Job::Result& d, const ReplyState& st) const {
    if (ep == Endpoint::kLlamaCompletion) {
      return {{"content", ""},
              {"stop", true},
              {"tokens_cached", d.cached_tokens},
              {"tokens_evaluated", d.prompt_tokens},
              {"tokens_predicted", d.completion_tokens},
              {"stop_type", d.finish_reason == "length" ? "limit" : "eos"},
              {"timings", timings(d)}};
    }
    const bool calls = st.chat && !st.chat->message().tool_calls.empty();
    json choice = ep == Endpoint::kChat ? json{{"index", 0}, {"delta", json::object()}}
                                        : json{{"index", 0}, {"text", ""}};
    choice["finish_reason"] = finish_reason(d, calls);
    json c = envelope(json::array({choice}), false);
    c["usage"] = usage(d);
    c["timings"] = timings(d);
    return c;
  }
  json whole(const Job::Result& d, ReplyState& st) const {
    if (ep == Endpoint::kLlamaCompletion) {
      json j = final_chunk(d, st);
      j["content"] = st.text;
      if (!st.logprobs.empty()) j["completion_probabilities"] = logprobs_json(ep, st.logprobs);
      return j;
    }
    json choice = {{"index", 0}};
    if (ep == Endpoint::kChat) {
      const auto& m = st.finish();
      json msg = {{"role", "assistant"}};
      msg["content"] = m.content.empty() && !m.tool_calls.empty() ? json(nullptr) : json(m.content);
      if (!m.reasoning_content.empty()) msg["reasoning_content"] = m.reasoning_content;
      if (!m.tool_calls.empty()) {
        json calls = json::array();
        for (const auto& c : m.tool_calls) {
          calls.push_back({{"id", c.id},
                           {"type", "function"},
                           {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
        }
        msg["tool_calls"] = calls;
      }
      choice["message"] = msg;
      choice["finish_reason"] = finish_reason(d, !m.tool_calls.empty());
    } else {
      choice["text"] = st.text;
      choice["finish_reason"] = finish_reason(d, false);
    }
    choice["logprobs"] = st.logprobs.empty() ? json(nullptr) : logprobs_json(ep, st.logprobs);
    json j = envelope(json::array({choice}), true);
    j["usage"] = usage(d);
    j["timings"] = timings(d);
    return j;
  }
};

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
  http_->set_payload_max_length(cfg_.max_body_bytes);
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

void HttpServer::routes() {
  auto& s = *http_;
  s.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "internal error";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        send_error(res, {500, what});
      });
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404)
      send_error(res, {404, "no endpoint " + req.method + " " + req.path});
    else if (res.status == 413) {
      // httplib caps form-encoded bodies at 8 KiB: `curl -d` sends that content type.
      const bool form =
          req.get_header_value("Content-Type").find("x-www-form-urlencoded") != std::string::npos;
      send_error(res, {413, form ? "request body too large for Content-Type "
                                   "application/x-www-form-urlencoded; send application/json"
                                 : "request body too large"});
    } else
      send_error(res, {res.status, "request failed with HTTP " + std::to_string(res.status)});
  });

  // Optional API key: "Authorization: Bearer KEY" (or "X-Api-Key: KEY") everywhere but /health
  // and the status page's HTML (its data, /status.json, is guarded like every other endpoint).
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    using H = httplib::Server::HandlerResponse;
    if (cfg_.api_key.empty() || req.path == "/health" || is_status_page(req)) return H::Unhandled;
    const bool ok = req.get_header_value("Authorization") == "Bearer " + cfg_.api_key ||
                    req.get_header_value("X-Api-Key") == cfg_.api_key;
    if (ok) return H::Unhandled;
    send_error(res, {401, "missing or wrong API key (send Authorization: Bearer <key>)"});
    return H::Handled;
  });
  s.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    json m = {{"object", "list"},
              {"data", json::array({{{"id", cfg_.model_id},
                                     {"object", "model"},
                                     {"created", unix_now()},
                                     {"owned_by", "kvstash"}}})}};
    res.set_content(dump(m), "application/json");
  });
  s.Get("/props", [this](const httplib::Request&, httplib::Response& res) {
    json p = props_;
    if (cache_) {
      const auto st = cache_->stats();
      p["cache"]["disk_bytes"] = st.disk_bytes;
      p["cache"]["ram_bytes"] = st.ram_bytes;
      p["cache"]["vram_bytes"] = st.vram_bytes;
      p["cache"]["entries"] = st.entries;
      p["cache"]["chunks"] = st.chunks;
    }
    res.set_content(dump(p), "application/json");
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
    res.set_content(dump(a), "application/json");
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
    res.set_content(dump(status_json(pool_, cache_, *requests_, info)), "application/json");
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(prometheus_metrics(pool_, cache_, static_cast<int>(pool_.slots().size())),
                    "text/plain; version=0.0.4");
  });
  s.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) {
    json j = json::parse(req.body, nullptr, false);
    if (!j.is_object() || !j.contains("content") || !j["content"].is_string()) {
      return send_error(res, {400, "'content' must be a string"});
    }
    const bool add_special = j.value("add_special", false);
    res.set_content(dump({{"tokens", model_.tokenize(j["content"], add_special, true)}}),
                    "application/json");
  });
  s.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) {
    json j = json::parse(req.body, nullptr, false);
    if (!j.is_object() || !j.contains("tokens") || !j["tokens"].is_array()) {
      return send_error(res, {400, "'tokens' must be an array of token ids"});
    }
    std::vector<engine::Token> toks;
    for (const auto& t : j["tokens"]) {
      if (!t.is_number_integer() || t.get<long long>() < 0 ||
          t.get<long long>() >= model_.n_vocab()) {
        return send_error(res, {400, "'tokens' must hold integers in [0, " +
                                         std::to_string(model_.n_vocab()) + ")"});
      }
      toks.push_back(t.get<engine::Token>());
    }
    res.set_content(dump({{"content", model_.detokenize(toks)}}), "application/json");
  });

  auto generate = [this](Endpoint ep) {
    return [this, ep](const httplib::Request& req, httplib::Response& res) {
      const auto arrived = std::chrono::steady_clock::now();
      const int64_t arrived_ms = unix_now_ms();
      auto parsed = parse_request(ep, req.body, model_.n_vocab());
      if (auto* e = std::get_if<ApiError>(&parsed)) return send_error(res, *e);
      ParsedRequest r = std::move(std::get<ParsedRequest>(parsed));

      auto job = std::make_shared<Job>();
      job->sampling = r.gen.sampling;
      job->stop = r.gen.stop;
      std::shared_ptr<const engine::ChatParser> parser;
      if (ep == Endpoint::kChat) {
        try {
          ChatPrompt cp = render_chat(model_, templates_, r.chat);
          job->prompt = std::move(cp.tokens);
          job->info = std::move(cp.info);
          job->sampling.grammar = std::move(cp.render.grammar);
          job->stop.insert(job->stop.end(), cp.render.stops.begin(), cp.render.stops.end());
          parser = std::move(cp.render.parser);
        } catch (const engine::ChatError& e) {
          return send_error(res, {400, e.what()});
        } catch (const std::exception& e) {
          return send_error(res, {400, std::string("cannot apply the chat template: ") + e.what()});
        }
      } else {
        job->prompt =
            !r.prompt_tokens.empty() ? r.prompt_tokens : model_.tokenize(r.prompt_text, true, true);
        if (!r.gen.json_schema.empty()) {
          try {
            job->sampling.grammar.grammar = engine::grammar_from_json_schema(r.gen.json_schema);
          } catch (const engine::ChatError& e) {
            return send_error(res, {400, e.what()});
          }
        }
      }
      if (job->prompt.empty()) return send_error(res, {400, "the prompt is empty"});
      if (job->prompt.size() >= static_cast<size_t>(cfg_.slot_ctx)) {
        return send_error(res, {400, "the prompt has " + std::to_string(job->prompt.size()) +
                                         " tokens; the context holds " +
                                         std::to_string(cfg_.slot_ctx) + " per slot"});
      }
      if (!job->sampling.grammar.grammar.empty()) {
        try {  // a grammar llama.cpp cannot parse is the client's error, found before any work
          job->sampler = std::make_unique<engine::Sampler>(model_, job->sampling, cfg_.slot_ctx);
        } catch (const std::invalid_argument& e) {
          return send_error(res, {400, std::string("invalid grammar: ") + e.what()});
        }
      }
      job->scope = r.gen.scope;
      job->info.salt = r.gen.cache_salt;
      job->max_tokens = r.gen.max_tokens >= 0 ? r.gen.max_tokens : cfg_.n_predict;
      job->logprobs = r.gen.logprobs;

      auto ch = std::make_shared<Channel>();
      const bool stream = r.gen.stream;
      const bool want_progress = r.gen.return_progress && stream;
      const auto t0 = std::chrono::steady_clock::now();
      // The status page's record of this request: its slot, progress, first token and outcome.
      const auto log = requests_;
      const uint64_t rid = log->begin(endpoint_name(ep), job->prompt.size(), arrived_ms);
      // No lock: on_text, on_logprob and on_done of one job never run concurrently.
      auto first_token = std::make_shared<std::optional<std::chrono::steady_clock::time_point>>();
      auto saw_token = [log, rid, first_token] {
        if (first_token->has_value()) return;
        *first_token = std::chrono::steady_clock::now();
        log->first_token(rid);
      };
      job->on_start = [log, rid](int slot) { log->started(rid, slot); };
      job->on_progress = [ch, want_progress, t0, log, rid](int done, int total, int cached) {
        log->progress(rid, done, cached);
        if (!want_progress) return;
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count();
        ch->push({{"prompt_progress",
                   {{"total", total}, {"cache", cached}, {"processed", done}, {"time_ms", ms}}}});
      };
      job->on_text = [ch, saw_token](const std::string& piece) {
        saw_token();
        ch->push({{"text", piece}});
      };
      job->on_logprob = [ch, this, saw_token](engine::Token t, float lp,
                                              const std::vector<engine::TokenProb>& top) {
        saw_token();
        json tops = json::array();
        for (const auto& x : top) {
          tops.push_back(
              {{"id", x.token}, {"token", model_.token_text(x.token)}, {"logprob", x.logprob}});
        }
        ch->push({{"logprob",
                   {{"id", t}, {"token", model_.token_text(t)}, {"logprob", lp}, {"top", tops}}}});
      };
      job->on_done = [ch, log, rid, arrived, arrived_ms, first_token, ep, cache = cache_,
                      n_prompt = static_cast<uint32_t>(job->prompt.size())](const Job::Result& d) {
        const auto now = std::chrono::steady_clock::now();
        auto since = [&](std::chrono::steady_clock::time_point t) {
          return std::chrono::duration<double, std::milli>(t - arrived).count();
        };
        RequestRecord r;
        r.id = rid;
        r.endpoint = endpoint_name(ep);
        r.started_ms = arrived_ms;
        r.finished_ms = unix_now_ms();
        r.slot = d.slot;
        r.prompt_tokens = n_prompt;  // also for a job refused before a slot saw it
        r.cached_tokens = d.cached_tokens;
        r.completion_tokens = d.completion_tokens;
        r.cache_source = d.cache_source;
        r.restore_ms = d.restore_ms;
        r.prefill_ms = std::max(0.0, d.prompt_ms - d.restore_ms);
        r.total_ms = since(now);
        r.ttft_ms = first_token->has_value() ? since(**first_token) : r.total_ms;
        r.saved_ms = saved_ms(d, cache);
        r.finish_reason = d.finish_reason;
        for (const auto& st : d.stores) {
          r.stores.push_back({cache::reason_name(st.reason), st.outcome, st.tokens, st.bytes});
        }
        log->finish(std::move(r));
        ch->finish(d);
      };

      ReplyShape shape{
          ep, (ep == Endpoint::kChat ? "chatcmpl-" : "cmpl-") + std::to_string(++g_request_id),
          unix_now(), cfg_.model_id};
      auto reply = std::make_shared<ReplyState>(parser);
      pool_.submit(job);

      if (!stream) {
        // The whole reply first, so its HTTP status is the outcome's. (A non-streamed request
        // whose client goes away runs to its end; streamed ones are cancelled on disconnect.)
        std::unique_lock lock(ch->mu);
        ch->cv.wait(lock, [&] { return ch->done.has_value(); });
        for (const auto& ev : ch->events) reply->take(ev);
        const Job::Result d = *ch->done;
        lock.unlock();
        if (d.finish_reason == "error") return send_error(res, {d.error_status, d.error});
        res.set_content(dump(shape.whole(d, *reply)), "application/json");
        return;
      }
      res.set_chunked_content_provider(
          "text/event-stream",
          [=, role_sent = false](size_t, httplib::DataSink& sink) mutable {
            auto write = [&](const json& j) {
              const std::string data = "data: " + dump(j) + "\n\n";
              if (!sink.write(data.data(), data.size())) {
                job->cancelled = true;
                return false;
              }
              return true;
            };
            if (ep == Endpoint::kChat && !role_sent) {
              role_sent = true;
              if (!write(shape.chunk({{"role", "assistant"}, {"content", ""}}))) return false;
            }
            std::unique_lock lock(ch->mu);
            ch->cv.wait_for(lock, std::chrono::milliseconds(200),
                            [&] { return !ch->events.empty() || ch->done; });
            std::deque<json> events;
            events.swap(ch->events);
            const auto done = ch->done;
            lock.unlock();
            for (const auto& ev : events) {
              for (const auto& c : shape.stream_event(ev, *reply, true)) {
                if (!write(c)) return false;
              }
            }
            if (!done) {
              if (!sink.is_writable()) {
                job->cancelled = true;
                return false;
              }
              return true;
            }
            if (done->finish_reason == "error") {
              write(error_json({done->error_status, done->error}));
            } else {
              for (const auto& c : shape.stream_event({{"text", ""}}, *reply, false)) {
                if (!write(c)) return false;
              }
              if (!write(shape.final_chunk(*done, *reply))) return false;
              if (ep != Endpoint::kLlamaCompletion) {
                const std::string end = "data: [DONE]\n\n";
                sink.write(end.data(), end.size());
              }
            }
            sink.done();
            return true;
          },
          [job](bool success) {
            if (!success) job->cancelled = true;
          });
    };
  };
  s.Post("/v1/chat/completions", generate(Endpoint::kChat));
  s.Post("/chat/completions", generate(Endpoint::kChat));
  s.Post("/v1/completions", generate(Endpoint::kCompletions));
  s.Post("/completion", generate(Endpoint::kLlamaCompletion));
  s.Post("/completions", generate(Endpoint::kLlamaCompletion));
}

}  // namespace kvstash::server
