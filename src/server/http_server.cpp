#include "server/http_server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>

#include "server/api.h"
#include "server/chat_prompt.h"
#include "server/metrics.h"
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

}  // namespace

HttpServer::HttpServer(engine::Model& model, SlotPool& pool, cache::PrefixCache* cache,
                       HttpConfig cfg, json props)
    : model_(model),
      pool_(pool),
      cache_(cache),
      cfg_(std::move(cfg)),
      props_(std::move(props)),
      http_(std::make_unique<httplib::Server>()) {
  http_->set_payload_max_length(cfg_.max_body_bytes);
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

  // Optional API key: "Authorization: Bearer KEY" (or "X-Api-Key: KEY") everywhere but /health.
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    using H = httplib::Server::HandlerResponse;
    if (cfg_.api_key.empty() || req.path == "/health") return H::Unhandled;
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
      auto parsed = parse_request(ep, req.body, model_.n_vocab());
      if (auto* e = std::get_if<ApiError>(&parsed)) return send_error(res, *e);
      ParsedRequest r = std::move(std::get<ParsedRequest>(parsed));

      auto job = std::make_shared<Job>();
      if (ep == Endpoint::kChat) {
        try {
          ChatPrompt cp = render_chat(model_, r.messages);
          job->prompt = std::move(cp.tokens);
          job->info = std::move(cp.info);
        } catch (const std::exception& e) {
          return send_error(res, {400, std::string("cannot apply the chat template: ") + e.what()});
        }
      } else if (!r.prompt_tokens.empty()) {
        job->prompt = r.prompt_tokens;
      } else {
        job->prompt = model_.tokenize(r.prompt_text, true, true);
      }
      if (job->prompt.empty()) return send_error(res, {400, "the prompt is empty"});
      if (job->prompt.size() >= static_cast<size_t>(cfg_.slot_ctx)) {
        return send_error(res, {400, "the prompt has " + std::to_string(job->prompt.size()) +
                                         " tokens; the context holds " +
                                         std::to_string(cfg_.slot_ctx) + " per slot"});
      }
      job->scope = r.gen.scope;
      job->info.salt = r.gen.cache_salt;
      job->max_tokens = r.gen.max_tokens;
      job->sampling = r.gen.sampling;
      job->stop = r.gen.stop;

      auto ch = std::make_shared<Channel>();
      const bool want_progress = r.gen.return_progress && r.gen.stream;
      const auto t0 = std::chrono::steady_clock::now();
      job->on_progress = [ch, want_progress, t0](int done, int total, int cached) {
        if (!want_progress) return;
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count();
        ch->push({{"prompt_progress",
                   {{"total", total}, {"cache", cached}, {"processed", done}, {"time_ms", ms}}}});
      };
      job->on_text = [ch](const std::string& piece) { ch->push({{"text", piece}}); };
      job->on_done = [ch](const Job::Result& res) { ch->finish(res); };

      const std::string id =
          (ep == Endpoint::kChat ? "chatcmpl-" : "cmpl-") + std::to_string(++g_request_id);
      const int64_t created = unix_now();
      const std::string model_id = cfg_.model_id;

      auto usage = [](const Job::Result& d) {
        return json{{"prompt_tokens", d.prompt_tokens},
                    {"completion_tokens", d.completion_tokens},
                    {"total_tokens", d.prompt_tokens + d.completion_tokens},
                    {"prompt_tokens_details", {{"cached_tokens", d.cached_tokens}}}};
      };
      auto timings = [](const Job::Result& d) {
        return json{{"cache_n", d.cached_tokens},
                    {"prompt_n", d.prompt_tokens - d.cached_tokens},
                    {"prompt_ms", d.prompt_ms},
                    {"predicted_n", d.completion_tokens},
                    {"predicted_ms", d.generation_ms}};
      };
      auto finish = [](const Job::Result& d) {
        return d.finish_reason == "length" ? "length" : "stop";
      };
      // One streamed piece in the endpoint's shape.
      auto chunk = [=](const json& ev) -> json {
        if (ev.contains("prompt_progress")) {
          json c = ep == Endpoint::kLlamaCompletion
                       ? json{{"content", ""}, {"stop", false}}
                       : json{{"id", id},
                              {"object",
                               ep == Endpoint::kChat ? "chat.completion.chunk" : "text_completion"},
                              {"created", created},
                              {"model", model_id},
                              {"choices", json::array()}};
          c["prompt_progress"] = ev["prompt_progress"];
          return c;
        }
        const std::string text = ev["text"];
        if (ep == Endpoint::kLlamaCompletion) return {{"content", text}, {"stop", false}};
        json choice =
            ep == Endpoint::kChat
                ? json{{"index", 0}, {"delta", {{"content", text}}}, {"finish_reason", nullptr}}
                : json{{"index", 0}, {"text", text}, {"finish_reason", nullptr}};
        return {{"id", id},
                {"object", ep == Endpoint::kChat ? "chat.completion.chunk" : "text_completion"},
                {"created", created},
                {"model", model_id},
                {"choices", json::array({choice})}};
      };
      auto final_chunk = [=](const Job::Result& d) -> json {
        if (ep == Endpoint::kLlamaCompletion) {
          return {{"content", ""},
                  {"stop", true},
                  {"tokens_cached", d.cached_tokens},
                  {"tokens_evaluated", d.prompt_tokens},
                  {"tokens_predicted", d.completion_tokens},
                  {"stop_type", d.finish_reason == "length" ? "limit" : "eos"},
                  {"timings", timings(d)}};
        }
        json choice =
            ep == Endpoint::kChat
                ? json{{"index", 0}, {"delta", json::object()}, {"finish_reason", finish(d)}}
                : json{{"index", 0}, {"text", ""}, {"finish_reason", finish(d)}};
        return {{"id", id},
                {"object", ep == Endpoint::kChat ? "chat.completion.chunk" : "text_completion"},
                {"created", created},
                {"model", model_id},
                {"choices", json::array({choice})},
                {"usage", usage(d)},
                {"timings", timings(d)}};
      };
      auto whole = [=](const Job::Result& d, const std::string& text) -> json {
        if (ep == Endpoint::kLlamaCompletion) {
          json j = final_chunk(d);
          j["content"] = text;
          return j;
        }
        json choice = ep == Endpoint::kChat
                          ? json{{"index", 0},
                                 {"message", {{"role", "assistant"}, {"content", text}}},
                                 {"finish_reason", finish(d)}}
                          : json{{"index", 0},
                                 {"text", text},
                                 {"logprobs", nullptr},
                                 {"finish_reason", finish(d)}};
        return {{"id", id},
                {"object", ep == Endpoint::kChat ? "chat.completion" : "text_completion"},
                {"created", created},
                {"model", model_id},
                {"choices", json::array({choice})},
                {"usage", usage(d)},
                {"timings", timings(d)}};
      };

      pool_.submit(job);
      const bool stream = r.gen.stream;
      // Both shapes are written from a content provider, so a client that goes away is noticed
      // (is_writable) and its request cancelled, even during a long prefill.
      res.set_chunked_content_provider(
          stream ? "text/event-stream" : "application/json",
          [=, text = std::string(), role_sent = false](size_t, httplib::DataSink& sink) mutable {
            auto write = [&](const std::string& data) {
              if (!sink.write(data.data(), data.size())) {
                job->cancelled = true;
                return false;
              }
              return true;
            };
            if (stream && ep == Endpoint::kChat && !role_sent) {
              role_sent = true;
              json c = chunk({{"text", ""}});
              c["choices"][0]["delta"] = {{"role", "assistant"}, {"content", ""}};
              if (!write("data: " + dump(c) + "\n\n")) return false;
            }
            std::unique_lock lock(ch->mu);
            ch->cv.wait_for(lock, std::chrono::milliseconds(200),
                            [&] { return !ch->events.empty() || ch->done; });
            std::deque<json> events;
            events.swap(ch->events);
            const auto done = ch->done;
            lock.unlock();
            for (const auto& ev : events) {
              if (stream) {
                if (!write("data: " + dump(chunk(ev)) + "\n\n")) return false;
              } else if (ev.contains("text")) {
                text += ev["text"].get<std::string>();
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
              const json err = error_json({500, done->error});
              write(stream ? "data: " + dump(err) + "\n\n" : dump(err));
            } else if (stream) {
              if (!write("data: " + dump(final_chunk(*done)) + "\n\n")) return false;
              if (ep != Endpoint::kLlamaCompletion) write("data: [DONE]\n\n");
            } else {
              write(dump(whole(*done, text)));
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
