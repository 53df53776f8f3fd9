#include "loadgen/concurrency.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <latch>
#include <mutex>
#include <thread>

#include "loadgen/server_runner.h"

namespace kvstash::loadgen {
namespace {
using Clock = std::chrono::steady_clock;

double secs(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double quantile(const std::vector<double>& sorted, double q) {
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
}

// Generated tokens of a stream: the server's count, else the chunks the client saw.
int generated(const ChatResult& r) {
  return r.completion_tokens >= 0 ? r.completion_tokens : r.tokens;
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// Counts down once per stream when it has streamed `after` tokens (or ended before that), so
// the long request goes while every stream is decoding.
class ReadyGate {
 public:
  explicit ReadyGate(int streams) : left_(streams) {}
  void arrive() {
    std::lock_guard<std::mutex> l(m_);
    if (--left_ <= 0) cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return left_ <= 0; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int left_;
};

// One scenario on a running server: the streams released together, and with `long_prompt` the
// interference request once every stream is decoding.
ScenarioResult run_scenario(int port, int slots, const ConcurrencyConfig& cfg,
                            const std::optional<Step>& long_prompt, int timeout_s) {
  ScenarioResult r;
  r.slots = slots;
  const size_t n = cfg.streams.size();
  r.streams.resize(n);
  std::latch go(static_cast<std::ptrdiff_t>(n) + 1);
  ReadyGate ready(static_cast<int>(n));
  std::vector<std::thread> threads;
  for (size_t k = 0; k < n; ++k) {
    threads.emplace_back([&, k] {
      ChatExtras x = cfg.extras;
      bool arrived = false;
      x.on_token = [&](int tokens) {
        if (tokens == cfg.interference_after) {
          arrived = true;
          ready.arrive();
        }
      };
      go.arrive_and_wait();
      r.streams[k] = stream_chat("127.0.0.1", port, cfg.streams[k], timeout_s, x);
      if (!arrived) ready.arrive();
    });
  }
  const auto origin = Clock::now();
  go.arrive_and_wait();
  if (long_prompt) {
    ready.wait();
    r.long_request = stream_chat("127.0.0.1", port, *long_prompt, timeout_s, cfg.extras);
  }
  for (auto& t : threads) t.join();
  for (const auto& s : r.streams) {
    std::vector<double> at;
    const double sent = secs(origin, s.sent);
    for (double t : s.token_s) at.push_back(sent + t);
    r.token_at.push_back(std::move(at));
  }
  r.wall_s = secs(origin, Clock::now());
  if (r.long_request) r.window_start_s = secs(origin, r.long_request->sent);
  summarize(r);
  return r;
}

std::string check(const ScenarioResult& r) {
  std::vector<const ChatResult*> all;
  for (const auto& s : r.streams) all.push_back(&s);
  if (r.long_request) all.push_back(&*r.long_request);
  for (const auto* s : all) {
    if (!s->ok) return s->error;
  }
  return "";
}
}  // namespace

Stats stats(std::vector<double> v) {
  Stats s;
  s.n = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.median = quantile(v, 0.5);
  s.p99 = quantile(v, 0.99);
  s.max = v.back();
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  return s;
}

void summarize(ScenarioResult& r) {
  double first = 0, last = 0;
  bool any = false;
  int decoded = 0;
  std::vector<double> itl, ttft, in_window, outside;
  r.completion_tokens = 0;
  r.stream_itl_s.clear();
  if (r.long_request) {
    r.window_end_s = r.window_start_s + r.long_request->ttft_s;
  }
  r.window_covered = r.long_request.has_value();
  for (size_t k = 0; k < r.streams.size(); ++k) {
    const auto& s = r.streams[k];
    const auto& at = r.token_at[k];
    r.completion_tokens += std::max(generated(s), 0);
    ttft.push_back(s.ttft_s);
    std::vector<double> own;
    for (size_t i = 1; i < at.size(); ++i) {
      const double d = at[i] - at[i - 1];
      own.push_back(d);
      // An interval overlapping the window was (partly) spent beside the long prefill.
      const bool overlaps =
          r.long_request && at[i] > r.window_start_s && at[i - 1] < r.window_end_s;
      (overlaps ? in_window : outside).push_back(d);
    }
    itl.insert(itl.end(), own.begin(), own.end());
    r.stream_itl_s.push_back(stats(std::move(own)));
    if (at.empty()) {
      r.window_covered = false;
      continue;
    }
    first = any ? std::min(first, at.front()) : at.front();
    last = any ? std::max(last, at.back()) : at.back();
    any = true;
    decoded += std::max(generated(s) - 1, 0);
    if (at.back() < r.window_end_s) r.window_covered = false;
  }
  r.decode_wall_s = any ? last - first : 0;
  r.aggregate_decode_tok_s = r.decode_wall_s > 0 ? decoded / r.decode_wall_s : 0;
  r.throughput_tok_s = r.wall_s > 0 ? r.completion_tokens / r.wall_s : 0;
  r.itl_s = stats(itl);
  r.ttft_s = stats(ttft);
  if (r.long_request) {
    r.itl_in_window_s = stats(in_window);
    r.itl_outside_s = stats(outside);
  }
}

ConcurrencyRun run_concurrency(const std::string& name, const SpecForSlots& spec,
                               const ConcurrencyConfig& cfg, const RunOptions& opt) {
  ConcurrencyRun run;
  run.name = name;
  const int n = static_cast<int>(cfg.streams.size());
  const auto say = [&](const std::string& s) {
    if (opt.progress) opt.progress("[" + name + "] " + s);
  };
  // One server process per scenario: the steady one runs with exactly N slots, as its peer does.
  const auto scenario = [&](int slots, const std::optional<Step>& long_prompt,
                            const std::string& log) {
    const int port = free_port();
    const ServerSpec s = spec(slots);
    ServerRunner server(substitute_port(s.argv, port), opt.out_dir + "/" + log, port);
    say("slots=" + std::to_string(slots) + " ready in " +
        fmt("%.1f", server.start(opt.start_timeout_s)) + " s");
    const auto w = stream_chat("127.0.0.1", port, cfg.warmup, opt.request_timeout_s, cfg.extras);
    if (!w.ok) throw std::runtime_error("warm-up request: " + w.error);
    auto r = run_scenario(port, slots, cfg, long_prompt, opt.request_timeout_s);
    server.stop(opt.stop_timeout_s);
    if (const auto e = check(r); !e.empty()) throw std::runtime_error(e);
    say("streams=" + std::to_string(n) + " aggregate decode " +
        fmt("%.1f", r.aggregate_decode_tok_s) + " tok/s, inter-token median " +
        fmt("%.1f", 1e3 * r.itl_s.median) + " ms p99 " + fmt("%.1f", 1e3 * r.itl_s.p99) +
        " ms, TTFT median " + fmt("%.2f", r.ttft_s.median) + " s");
    if (r.long_request) {
      say("long prompt TTFT " + fmt("%.2f", r.long_request->ttft_s) +
          " s; inter-token in its window median " + fmt("%.1f", 1e3 * r.itl_in_window_s.median) +
          " ms p99 " + fmt("%.1f", 1e3 * r.itl_in_window_s.p99) + " ms (outside: median " +
          fmt("%.1f", 1e3 * r.itl_outside_s.median) + " ms)");
    }
    return r;
  };
  try {
    run.steady = scenario(n, std::nullopt, name + ".log");
    if (cfg.long_prompt) {
      run.interference = scenario(n + 1, cfg.long_prompt, name + "-interference.log");
    }
  } catch (const std::exception& e) {
    run.error = e.what();
  }
  run.failed = !run.error.empty();
  if (run.failed) say("failed: " + run.error);
  return run;
}

}  // namespace kvstash::loadgen
