#include "loadgen/concurrency_report.h"

#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

namespace kvstash::loadgen {
namespace {
using nlohmann::json;

const char* kAggregateDefinition =
    "sum over streams of (completion tokens - 1) / (latest last token - earliest first token): "
    "the tokens decoded after each stream's first (which its prefill produced) over the wall "
    "time of the decode phase, client clock";

std::string f(const char* fmt, double v) {
  char b[64];
  std::snprintf(b, sizeof b, fmt, v);
  return b;
}

json stats_json(const Stats& s) {
  return {{"n", s.n}, {"median", s.median}, {"p99", s.p99}, {"max", s.max}, {"mean", s.mean}};
}

json stream_json(const ChatResult& s, const std::vector<double>& at, const Stats& itl) {
  return {{"ok", s.ok},
          {"error", s.error},
          {"prompt_tokens", s.prompt_tokens},
          {"completion_tokens", s.completion_tokens},
          {"chunks", s.tokens},
          {"ttft_s", s.ttft_s},
          {"total_s", s.total_s},
          {"decode_tok_s", s.decode_tok_s},
          {"first_token_at_s", at.empty() ? 0.0 : at.front()},
          {"last_token_at_s", at.empty() ? 0.0 : at.back()},
          {"itl_s", stats_json(itl)}};
}

json scenario_json(const ScenarioResult& r) {
  json j = {{"slots", r.slots},
            {"completion_tokens", r.completion_tokens},
            {"wall_s", r.wall_s},
            {"decode_wall_s", r.decode_wall_s},
            {"aggregate_decode_tok_s", r.aggregate_decode_tok_s},
            {"throughput_tok_s", r.throughput_tok_s},
            {"itl_s", stats_json(r.itl_s)},
            {"ttft_s", stats_json(r.ttft_s)},
            {"streams", json::array()}};
  for (size_t k = 0; k < r.streams.size(); ++k) {
    j["streams"].push_back(stream_json(r.streams[k], r.token_at[k], r.stream_itl_s[k]));
  }
  if (r.long_request) {
    const double median = r.itl_outside_s.median;
    j["long_request"] = {{"prompt_tokens", r.long_request->prompt_tokens},
                         {"ttft_s", r.long_request->ttft_s},
                         {"window_start_s", r.window_start_s},
                         {"window_end_s", r.window_end_s}};
    j["itl_in_window_s"] = stats_json(r.itl_in_window_s);
    j["itl_outside_window_s"] = stats_json(r.itl_outside_s);
    j["p99_in_window_over_median_outside"] = median > 0 ? r.itl_in_window_s.p99 / median : 0.0;
    j["window_covered"] = r.window_covered;
  }
  return j;
}

// A markdown table with one column per server; a cell is "-" where a server has no figure.
class Table {
 public:
  Table(std::ostringstream& md, const std::vector<ConcurrencyRun>& runs) : md_(md), runs_(runs) {
    md_ << "| |";
    for (const auto& r : runs_) md_ << " " << r.name << " |";
    md_ << "\n|---|";
    for (size_t i = 0; i < runs_.size(); ++i) md_ << "---|";
    md_ << "\n";
  }
  // `get` gives the cell of a server's scenario; `pick` chooses the scenario.
  void row(const std::string& name,
           const std::function<const std::optional<ScenarioResult>&(const ConcurrencyRun&)>& pick,
           const std::function<std::string(const ScenarioResult&)>& get) {
    md_ << "| " << name << " |";
    for (const auto& r : runs_) md_ << " " << (pick(r) ? get(*pick(r)) : "-") << " |";
    md_ << "\n";
  }

 private:
  std::ostringstream& md_;
  const std::vector<ConcurrencyRun>& runs_;
};

const std::optional<ScenarioResult>& steady(const ConcurrencyRun& r) { return r.steady; }
const std::optional<ScenarioResult>& interference(const ConcurrencyRun& r) {
  return r.interference;
}

std::string ms(double s) { return f("%.1f", 1e3 * s); }

void steady_section(std::ostringstream& md, const ConcurrencyShape& shape,
                    const std::vector<ConcurrencyRun>& runs) {
  md << "## " << shape.streams << " concurrent streams\n\n";
  Table t(md, runs);
  t.row("slots", steady, [](const auto& r) { return std::to_string(r.slots); });
  t.row("completion tokens", steady,
        [](const auto& r) { return std::to_string(r.completion_tokens); });
  t.row("**aggregate decode (tok/s)**", steady,
        [](const auto& r) { return "**" + f("%.1f", r.aggregate_decode_tok_s) + "**"; });
  t.row("throughput incl. prefill (tok/s)", steady,
        [](const auto& r) { return f("%.1f", r.throughput_tok_s); });
  t.row("decode phase / whole wall (s)", steady,
        [](const auto& r) { return f("%.2f", r.decode_wall_s) + " / " + f("%.2f", r.wall_s); });
  t.row("inter-token median (ms)", steady, [](const auto& r) { return ms(r.itl_s.median); });
  t.row("inter-token p99 (ms)", steady, [](const auto& r) { return ms(r.itl_s.p99); });
  t.row("inter-token max (ms)", steady, [](const auto& r) { return ms(r.itl_s.max); });
  t.row("TTFT median / p99 (s)", steady,
        [](const auto& r) { return f("%.3f", r.ttft_s.median) + " / " + f("%.3f", r.ttft_s.p99); });
  md << "\nAggregate decode: " << kAggregateDefinition << ". Inter-token intervals are pooled over "
     << "the streams.\n\n";
}

void interference_section(std::ostringstream& md, const ConcurrencyShape& shape,
                          const std::vector<ConcurrencyRun>& runs) {
  md << "## A " << shape.interference_tokens << "-token prompt arrives while " << shape.streams
     << " streams decode\n\n";
  Table t(md, runs);
  t.row("slots", interference, [](const auto& r) { return std::to_string(r.slots); });
  t.row("long prompt TTFT = prefill window (s)", interference,
        [](const auto& r) { return f("%.2f", r.long_request->ttft_s); });
  t.row("intervals in the window", interference,
        [](const auto& r) { return std::to_string(r.itl_in_window_s.n); });
  t.row("inter-token in the window median / p99 / max (ms)", interference, [](const auto& r) {
    const auto& s = r.itl_in_window_s;
    return ms(s.median) + " / " + ms(s.p99) + " / " + ms(s.max);
  });
  t.row("inter-token outside the window median (ms)", interference,
        [](const auto& r) { return ms(r.itl_outside_s.median); });
  t.row("**p99 in the window / median outside**", interference, [](const auto& r) {
    const double m = r.itl_outside_s.median;
    return "**" + (m > 0 ? f("%.2f", r.itl_in_window_s.p99 / m) : std::string("-")) + "**";
  });
  t.row("streams decoding the whole window", interference, [](const auto& r) {
    return std::string(r.window_covered ? "yes" : "no (raise --max-tokens)");
  });
  t.row("aggregate decode (tok/s)", interference,
        [](const auto& r) { return f("%.1f", r.aggregate_decode_tok_s); });
  md << "\nThe window runs from sending the long request to its first token; an interval of a "
        "running stream counts in it when the two overlap.\n\n";
}

void per_stream_section(std::ostringstream& md, const std::vector<ConcurrencyRun>& runs) {
  md << "## Per stream\n\n| server | scenario | stream | prompt | tokens | TTFT (s) | decode "
        "(tok/s) | inter-token median / p99 (ms) |\n|---|---|---|---|---|---|---|---|\n";
  for (const auto& run : runs) {
    for (const auto* sc : {&run.steady, &run.interference}) {
      if (!*sc) continue;
      const auto& r = **sc;
      for (size_t k = 0; k < r.streams.size(); ++k) {
        const auto& s = r.streams[k];
        const Stats& itl = r.stream_itl_s[k];
        md << "| " << run.name << " | " << (sc == &run.steady ? "steady" : "interference") << " | "
           << k << " | " << s.prompt_tokens << " | " << s.completion_tokens << " | "
           << f("%.3f", s.ttft_s) << " | " << f("%.1f", s.decode_tok_s) << " | " << ms(itl.median)
           << " / " << ms(itl.p99) << " |\n";
      }
    }
  }
}

void write_token_tsv(const std::string& path, const ConcurrencyRun& run) {
  std::ofstream o(path);
  o << "# scenario\tstream\ttoken\tat_s\n";
  for (const auto* sc : {&run.steady, &run.interference}) {
    if (!*sc) continue;
    for (size_t k = 0; k < (*sc)->token_at.size(); ++k) {
      const auto& at = (*sc)->token_at[k];
      for (size_t i = 0; i < at.size(); ++i) {
        o << (sc == &run.steady ? "steady" : "interference") << "\t" << k << "\t" << i << "\t"
          << f("%.6f", at[i]) << "\n";
      }
    }
  }
}

}  // namespace

std::string write_concurrency_report(const std::string& dir, const ReportInfo& info,
                                     const ConcurrencyShape& shape,
                                     const std::vector<ConcurrencyRun>& runs) {
  std::ostringstream md;
  md << "# kvstash bench: concurrency\n\n"
     << "Command: `" << info.command << "`\n\n"
     << "Model: " << info.model << "  \nWorkload: " << info.workload << "\n\n";
  steady_section(md, shape, runs);
  json ratios = json::object();
  const auto& first = runs.front();
  for (size_t i = 1; i < runs.size(); ++i) {
    if (!first.steady || !runs[i].steady || runs[i].steady->aggregate_decode_tok_s <= 0) continue;
    const double q = first.steady->aggregate_decode_tok_s / runs[i].steady->aggregate_decode_tok_s;
    ratios[first.name + "/" + runs[i].name] = {{"aggregate_decode_tok_s", q}};
    md << "**Aggregate decode tok/s " << first.name << " / " << runs[i].name << " = "
       << f("%.3f", q) << "**\n\n";
  }
  if (shape.interference_tokens > 0) interference_section(md, shape, runs);
  for (const auto& r : runs) {
    if (r.failed) md << "**" << r.name << " failed:** " << r.error << "\n\n";
  }
  per_stream_section(md, runs);
  std::ofstream(dir + "/report.md") << md.str();

  json c = {{"streams", shape.streams},
            {"prompt_tokens", shape.prompt_tokens},
            {"max_tokens", shape.max_tokens},
            {"interference_tokens", shape.interference_tokens},
            {"aggregate_definition", kAggregateDefinition},
            {"servers", json::array()},
            {"ratios", ratios}};
  for (const auto& r : runs) {
    json s = {{"name", r.name}, {"failed", r.failed}, {"error", r.error}};
    if (r.steady) s["steady"] = scenario_json(*r.steady);
    if (r.interference) s["interference"] = scenario_json(*r.interference);
    c["servers"].push_back(s);
    write_token_tsv(dir + "/tokens-" + r.name + ".tsv", r);
  }
  const json j = {{"command", info.command},
                  {"model", info.model},
                  {"workload", info.workload},
                  {"concurrency", c}};
  std::ofstream(dir + "/report.json") << j.dump(2) << "\n";
  return md.str();
}

}  // namespace kvstash::loadgen
