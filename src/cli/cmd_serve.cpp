// kvstash serve: the HTTP server.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "cli/commands.h"
#include "cli/options.h"
#include "server/drain.h"
#include "server/http_server.h"
#include "server/slot_pool.h"
#include "util/log.h"
#include "util/size.h"

namespace kvstash::cli {

namespace {

// The graceful drain (server/drain.h), on the signal thread: the server is not ready already;
// this waits, polling the work left and a second signal, until drain_over ends it.
void drain(const server::HttpServer& http, server::SlotPool& pool, const sigset_t& sigs,
           int limit_s, const std::string& received) {
  using Clock = std::chrono::steady_clock;
  auto work = [&] { return pool.pending() + static_cast<size_t>(std::max(0, http.preparing())); };
  auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  log::info(received + ": draining: not ready, finishing " + std::to_string(work()) +
            " requests (at most " + std::to_string(limit_s) + " s)");
  const auto begun = Clock::now();
  auto last_busy = begun;
  server::DrainState st;
  st.limit_s = limit_s;
  for (;;) {
    const auto now = Clock::now();
    const size_t left = work();
    if (left > 0) last_busy = now;
    st.elapsed_s = seconds(now - begun);
    st.idle_s = seconds(now - last_busy);
    if (const auto end = server::drain_over(st); end != server::DrainEnd::kNotYet) {
      char took[32];
      std::snprintf(took, sizeof took, "%.1f", st.elapsed_s);
      log::info(std::string("drain over after ") + took + " s: " + server::drain_end_name(end) +
                " (" + std::to_string(left) + " requests left)");
      return;
    }
    const timespec poll{0, server::kDrainPollMs * 1000000L};
    if (sigtimedwait(&sigs, nullptr, &poll) > 0) st.second_signal = true;
  }
}

}  // namespace

Run add_serve(CLI::App& app) {
  struct Opts {
    EngineFlags engine;
    CacheFlags cache;
    server::HttpConfig http;
    int parallel = 1;
    std::string scope = "full", alias, max_body = "64M", chat_template, chat_template_file;
    int shutdown_timeout = 60;
    int drain_seconds = 0;
    std::vector<std::string> logit_bias;
    bool verbose = false;
  };
  auto o = std::make_shared<Opts>();
  o->engine.session.n_ctx = 16384;
  o->engine.add(app);
  o->cache.add(app);
  app.add_option("--host", o->http.host, "address to listen on")->capture_default_str();
  app.add_option("--port", o->http.port, "port (0: any free port)")->capture_default_str();
  app.add_option("--parallel,--np", o->parallel, "slots: requests served concurrently")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--cache-scope", o->scope, "off | full | auto | auto:N | N")
      ->capture_default_str();
  app.add_option("-a,--alias", o->alias, "model id reported by the API (default: file name)");
  app.add_option("--shutdown-timeout", o->shutdown_timeout,
                 "seconds a graceful shutdown may take before the process exits anyway")
      ->capture_default_str();
  app.add_option("--drain-seconds", o->drain_seconds,
                 "on SIGTERM/SIGINT, first turn not ready (GET /ready: 503) and keep serving "
                 "until nothing ran for 2 s, for at most this long; a second signal ends the "
                 "drain (0: shut down at once)")
      ->capture_default_str()
      ->check(CLI::Range(0, 86400));
  app.add_flag("-v,--verbose", o->verbose, "log llama.cpp's own output too");
  app.add_option("--chat-template", o->chat_template,
                 "chat template instead of the model's: Jinja source, or chatml");
  app.add_option("--chat-template-file", o->chat_template_file,
                 "read the chat template (Jinja) from this file")
      ->check(CLI::ExistingFile);
  app.add_option("-n,--n-predict", o->http.n_predict,
                 "tokens to generate when a request sets no max_tokens (-1: until EOS or the "
                 "context's end)")
      ->capture_default_str()
      ->check(CLI::Range(-1, 1 << 20));
  app.add_option("--max-tokens-cap", o->http.max_tokens_cap,
                 "no request generates more tokens than this, whatever its max_tokens (agent "
                 "clients ask for 32000; -1: no cap); a capped reply ends for length")
      ->capture_default_str()
      ->check(CLI::Range(-1, 1 << 20));
  app.add_option("--anthropic-billing-header", o->http.billing,
                 "Claude Code's first system line 'x-anthropic-billing-header: ...; cch=XXXXX;': "
                 "normalize (default: its per-request stamp made constant, as llama-server "
                 "does), drop (the line removed), keep")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, server::BillingHeader>{
              {"normalize", server::BillingHeader::kNormalize},
              {"drop", server::BillingHeader::kDrop},
              {"keep", server::BillingHeader::kKeep}},
          CLI::ignore_case));
  app.add_flag("--settle-turns,!--no-settle-turns", o->http.settle_turns,
               "after a chat reply with tool calls, bring the slot's live state to the reply as "
               "the client will send it back, so the next turn reuses the assistant turn too "
               "(default: on)");
  app.add_option("-l,--logit-bias", o->logit_bias,
                 "TOKEN_ID(+|-)BIAS added to every request's logit biases (repeatable; a request's "
                 "own bias for the token wins), as llama-server's, e.g. --logit-bias 151645+5");
  app.add_option(
      "--api-key", o->http.api_key,
      "require this key on every endpoint but /health and /ready (also $KVSTASH_API_KEY)");
  app.add_option("--max-request-bytes", o->max_body,
                 "largest request body accepted, after decoding gzip or brotli, however it is sent")
      ->capture_default_str();
  auto& lim = o->http.limits;
  app.add_option("--max-json-depth", lim.json_depth, "deepest nesting of a request's JSON")
      ->capture_default_str()
      ->check(CLI::Range(2, 10000));
  app.add_option("--max-messages", lim.messages, "most messages in a conversation")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 24));
  app.add_option("--max-tools", lim.tools, "most tools in a request")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 24));
  app.add_option("--max-grammar-bytes", lim.grammar_bytes, "longest GBNF grammar a request gives")
      ->capture_default_str();
  app.add_option("--max-prompt-tokens", lim.prompt_tokens,
                 "longest prompt in tokens (0: the context per slot)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-queue", lim.queue,
                 "requests that may wait for a slot; more get 503 with Retry-After")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--max-render-seconds", lim.render_seconds,
                 "time a request's chat rendering may spend finding message boundaries (the "
                 "request is served without the rest)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--allowed-host", o->http.allowed_hosts,
                 "without --api-key, a Host name accepted besides IP addresses and localhost "
                 "(repeatable): other names are refused, against DNS rebinding");
  return [o] {
    std::string err;
    const auto scope = cache::parse_scope(o->scope, &err);
    if (!scope) throw std::invalid_argument("--cache-scope: " + err);
    engine::set_llama_verbose(o->verbose);

    // Signals go to one thread that waits for them; every other thread blocks them.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

    const int total_ctx = o->engine.session.n_ctx;
    o->engine.session.n_ctx = total_ctx / o->parallel;
    log::info("loading " + o->engine.model);
    engine::Model model(o->engine.model, {o->engine.n_gpu_layers});
    o->engine.resolve(model);
    if (!o->chat_template_file.empty()) {
      if (!o->chat_template.empty()) {
        throw std::invalid_argument("give --chat-template or --chat-template-file, not both");
      }
      std::ifstream f(o->chat_template_file);
      std::stringstream text;
      text << f.rdbuf();
      o->chat_template = text.str();
    }
    const engine::ChatTemplates templates(model, o->chat_template);
    // One session builds the fingerprint and proves the settings work before the slots start.
    auto probe = std::make_unique<engine::Session>(model, o->engine.session);
    std::unique_ptr<cache::PrefixCache> cache;
    if (scope->kind == cache::Scope::Kind::kOff) {
      log::info("kv cache off (--cache-scope off)");
    } else {
      cache = o->cache.open(model, *probe);
    }
    // The log's, not /props': it names the build and settings a client has no need to know.
    log::info("kv state fingerprint " + probe->fingerprint().hex() + " (" +
              probe->fingerprint_settings() + ")");
    probe.reset();

    const cache::StoreConfig st = o->cache.store_config();
    server::SlotPool pool(model, o->engine.session, o->parallel, cache.get(), st, *scope);
    o->http.model_id =
        o->alias.empty() ? std::filesystem::path(o->engine.model).filename().string() : o->alias;
    o->http.slot_ctx = o->engine.session.n_ctx;
    o->http.slots = o->parallel;
    o->http.limits.body_bytes = parse_size(o->max_body);
    pool.set_max_queue(static_cast<size_t>(o->http.limits.queue));
    for (const auto& b : o->logit_bias) {
      const size_t at = b.find_first_of("+-", 1);
      size_t used = 0;
      long long token = -1;
      float bias = 0;
      try {
        token = std::stoll(b.substr(0, at), &used);
        bias = std::stof(b.substr(at));
      } catch (const std::exception&) {
        used = 0;
      }
      if (at == std::string::npos || used != at || token < 0 || token >= model.n_vocab()) {
        throw std::invalid_argument(
            "--logit-bias: expected TOKEN_ID+BIAS or TOKEN_ID-BIAS with a "
            "token id below " +
            std::to_string(model.n_vocab()) + ", got '" + b + "'");
      }
      o->http.logit_bias.emplace_back(static_cast<engine::Token>(token), bias);
    }
    if (o->http.api_key.empty()) {
      if (const char* k = std::getenv("KVSTASH_API_KEY")) o->http.api_key = k;
    }
    nlohmann::json props = {
        {"model_alias", o->http.model_id},
        {"max_tokens_cap", o->http.max_tokens_cap},
        {"architecture", model.arch()},
        {"n_ctx", total_ctx},
        {"n_ctx_per_slot", o->engine.session.n_ctx},
        {"total_slots", o->parallel},
        {"chat_template", templates.source()},
        {"chat_template_caps", templates.caps()},
        {"cache",
         {{"scope", scope->str()},
          {"enabled", cache != nullptr},
          {"dir", o->cache.disk_dir()},
          {"disk_budget", cache ? cache->config().disk_budget : 0},
          {"ram_budget", cache ? cache->config().ram_budget : 0},
          {"vram_budget", cache && cache->config().vram ? cache->config().vram->capacity() : 0},
          {"vram_budget_auto", o->cache.vram_budget == "auto"},
          {"staging_bytes", cache ? parse_size(o->cache.staging) : 0},
          {"store_queue_bytes", cache ? cache->config().store_queue : 0},
          {"buffers", cache ? cache->pool().allocator_name() : ""},
          {"plan", o->cache.plan},
          {"chunk_tokens", o->engine.session.chunk},
          {"resume", model.resume_kind() == engine::ResumeKind::kAnyBoundary ? "any chunk boundary"
                                                                             : "snapshots only"},
          {"min_tokens", st.min_tokens},
          {"cold_max_tokens", st.cold_max_tokens},
          {"boundary_align", st.boundary_align},
          {"boundary_trim", st.boundary_trim},
          {"continued_interval", st.continued_interval},
          {"turn_stores", st.turn_stores},
          {"recency_boost", o->cache.evict.recency_boost},
          {"recency_half_life_s", o->cache.evict.half_life_s}}}};
    server::HttpServer http(model, templates, pool, cache.get(), o->http, props);
    if (!http.bind()) return 1;

    std::atomic<bool> stopping{false};
    std::thread signal_thread([&] {
      int sig = 0;
      sigwait(&sigs, &sig);
      if (stopping.exchange(true)) return;
      std::string received = std::string("received ") + (sig == SIGINT ? "SIGINT" : "SIGTERM");
      http.set_not_ready(std::max(1, o->drain_seconds));
      if (o->drain_seconds > 0) {
        drain(http, pool, sigs, o->drain_seconds, received);
        received = "drained";
      }
      // The watchdog starts after the drain: --shutdown-timeout bounds the shutdown alone.
      log::info(received + ": storing live states and shutting down (at most " +
                std::to_string(o->shutdown_timeout) + " s)");
      std::thread([t = o->shutdown_timeout] {
        std::this_thread::sleep_for(std::chrono::seconds(t));
        log::error("shutdown took longer than --shutdown-timeout; exiting now");
        _exit(1);
      }).detach();
      // The jobs first: the HTTP threads that wait on them answer and end, so stop() returns.
      pool.begin_shutdown();
      http.stop();
    });
    http.serve();
    if (!stopping.exchange(true)) {
      pthread_kill(signal_thread.native_handle(), SIGTERM);  // wake the waiter
    }
    signal_thread.join();
    pool.shutdown();  // the slots' shutdown stores are queued now
    if (cache && !cache->drain(o->shutdown_timeout * 1000)) {
      log::error("kv cache stores not written within --shutdown-timeout; they are lost");
    }
    log::info("shutdown complete");
    return 0;
  };
}

}  // namespace kvstash::cli
