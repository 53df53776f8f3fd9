#include "loadgen/report.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "util/size.h"

namespace kvstash::loadgen {
namespace {

std::string f(const char* fmt, double v) {
  char b[64];
  std::snprintf(b, sizeof b, fmt, v);
  return b;
}

std::string opt_int(int v) { return v < 0 ? "-" : std::to_string(v); }

void write_tsv(const std::string& path, const ServerRun& run) {
  std::ofstream o(path);
  o << "# request\tsession\tprompt_tokens\toracle_tokens\tcached_tokens\tttft_s\tcum_ttft_s\t"
       "decode_tok_s\n";
  double cum = 0;
  for (size_t i = 0; i < run.requests.size(); ++i) {
    const auto& r = run.requests[i];
    cum += r.result.ttft_s;
    o << i + 1 << "\t" << r.session << "\t" << r.prompt_tokens << "\t" << r.oracle_tokens << "\t"
      << r.result.cached_tokens << "\t" << f("%.4f", r.result.ttft_s) << "\t" << f("%.4f", cum)
      << "\t" << f("%.2f", r.result.decode_tok_s) << "\n";
  }
}

// Plots with gnuplot when it is installed; says so in the report when it is not.
std::string plot(const std::string& dir, const std::vector<ServerRun>& runs) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    return "gnuplot is not installed: no plots (the .tsv files hold the data)";
  }
  std::ofstream g(dir + "/plots.gp");
  g << "set terminal png size 1100,520\nset key top left\nset grid\n"
       "set xlabel 'request'\n";
  auto lines = [&](int col) {
    std::string s;
    for (size_t i = 0; i < runs.size(); ++i) {
      s += std::string(i ? ", " : "plot ") + "'" + dir + "/requests-" + runs[i].name +
           ".tsv' using 1:" + std::to_string(col) + " with linespoints title '" + runs[i].name +
           "'";
    }
    return s + "\n";
  };
  g << "set output '" << dir << "/ttft.png'\nset title 'Time to first token per request'\n"
    << "set ylabel 'TTFT (s)'\n"
    << lines(6);
  g << "set output '" << dir << "/prefill.png'\n"
    << "set title 'Cumulative time to first token (prefill time) over the run'\n"
    << "set ylabel 'cumulative TTFT (s)'\n"
    << lines(7);
  g.close();
  const std::string cmd = "gnuplot '" + dir + "/plots.gp' 2>'" + dir + "/gnuplot.log'";
  if (std::system(cmd.c_str()) != 0) return "gnuplot failed: see gnuplot.log";
  return "plots: ttft.png, prefill.png";
}

// One row per request: its session, prompt and oracle, each server's cached tokens and TTFT.
void per_request_table(std::ostringstream& md, const std::vector<ServerRun>& runs) {
  md << "\n## Per request\n\n| # | session | prompt | oracle |";
  for (const auto& r : runs) md << " " << r.name << " cached | " << r.name << " TTFT (s) |";
  md << "\n|---|---|---|---|";
  for (size_t i = 0; i < runs.size(); ++i) md << "---|---|";
  md << "\n";
  size_t n = 0;
  for (const auto& r : runs) n = std::max(n, r.requests.size());
  for (size_t k = 0; k < n; ++k) {
    const RequestRecord* any = nullptr;
    for (const auto& r : runs) {
      if (k < r.requests.size()) any = &r.requests[k];
    }
    md << "| " << k + 1 << " | " << any->session << " | " << any->prompt_tokens << " | "
       << any->oracle_tokens << " |";
    for (const auto& r : runs) {
      if (k < r.requests.size()) {
        const auto& res = r.requests[k].result;
        md << " " << opt_int(res.cached_tokens)
           << (res.cache_source.empty() ? "" : " (" + res.cache_source + ")") << " | "
           << f("%.2f", res.ttft_s) << " |";
      } else {
        md << " - | - |";
      }
    }
    md << "\n";
  }
}

}  // namespace

Totals totals(const ServerRun& run) {
  Totals t;
  double weighted = 0, tok = 0;
  for (const auto& r : run.requests) {
    if (!r.result.ok) continue;
    ++t.requests;
    t.ttft_s += r.result.ttft_s;
    t.prompt_tokens += r.result.prompt_tokens >= 0 ? r.result.prompt_tokens : r.prompt_tokens;
    t.cached_tokens += std::max(r.result.cached_tokens, 0);
    t.oracle_tokens += r.oracle_tokens;
    if (r.result.tokens > 1) {
      weighted += r.result.decode_tok_s * (r.result.tokens - 1);
      tok += r.result.tokens - 1;
    }
  }
  t.reuse_of_oracle = t.oracle_tokens > 0 ? t.cached_tokens / t.oracle_tokens : 1.0;
  t.decode_tok_s = tok > 0 ? weighted / tok : 0;
  t.bytes_written = run.bytes_written;
  t.bytes_read = run.bytes_read;
  return t;
}

std::string write_report(const std::string& dir, const ReportInfo& info,
                         const std::vector<ServerRun>& runs, const ReportExtra& extra) {
  std::vector<Totals> tot;
  for (const auto& r : runs) {
    tot.push_back(totals(r));
    write_tsv(dir + "/requests-" + r.name + ".tsv", r);
  }
  std::ostringstream md;
  md << "# kvstash bench\n\n"
     << "Command: `" << info.command << "`\n\n"
     << "Model: " << info.model << "  \nWorkload: " << info.workload << "\n\n";
  md << "| | ";
  for (const auto& r : runs) md << r.name << " | ";
  md << "\n|---|";
  for (size_t i = 0; i < runs.size(); ++i) md << "---|";
  md << "\n";
  auto row = [&](const std::string& name, auto get) {
    md << "| " << name << " | ";
    for (size_t i = 0; i < runs.size(); ++i) md << get(i) << " | ";
    md << "\n";
  };
  row("requests completed", [&](size_t i) {
    return std::to_string(tot[i].requests) + (runs[i].failed ? " (failed: see below)" : "");
  });
  row("total TTFT (s)", [&](size_t i) { return f("%.2f", tot[i].ttft_s); });
  row("prompt tokens", [&](size_t i) { return f("%.0f", tot[i].prompt_tokens); });
  row("cached tokens", [&](size_t i) { return f("%.0f", tot[i].cached_tokens); });
  row("prefilled tokens",
      [&](size_t i) { return f("%.0f", tot[i].prompt_tokens - tot[i].cached_tokens); });
  row("oracle reusable tokens", [&](size_t i) { return f("%.0f", tot[i].oracle_tokens); });
  row("reuse / oracle", [&](size_t i) { return f("%.1f%%", 100 * tot[i].reuse_of_oracle); });
  row("decode (tok/s)", [&](size_t i) { return f("%.1f", tot[i].decode_tok_s); });
  row("cache bytes written",
      [&](size_t i) { return format_size(static_cast<uint64_t>(tot[i].bytes_written)); });
  row("cache bytes read",
      [&](size_t i) { return format_size(static_cast<uint64_t>(tot[i].bytes_read)); });
  row("startups (s)", [&](size_t i) {
    std::string s;
    for (double v : runs[i].startup_s) s += (s.empty() ? "" : ", ") + f("%.1f", v);
    return s;
  });
  if (runs.size() > 1 && tot[0].ttft_s > 0 && !runs[0].failed) {
    md << "\nRatios (" << runs[0].name << " against each):\n\n";
    for (size_t i = 1; i < runs.size(); ++i) {
      if (runs[i].failed) continue;
      md << "- total TTFT " << runs[0].name << " / " << runs[i].name << " = "
         << f("%.3f", tot[0].ttft_s / std::max(tot[i].ttft_s, 1e-9)) << " (" << runs[0].name << " "
         << f("%.2fx", tot[i].ttft_s / tot[0].ttft_s) << " faster)\n";
      if (tot[i].decode_tok_s > 0) {
        md << "- decode speed " << runs[0].name << " / " << runs[i].name << " = "
           << f("%.3f", tot[0].decode_tok_s / tot[i].decode_tok_s) << "\n";
      }
    }
  }
  for (const auto& r : runs) {
    if (r.failed) md << "\n**" << r.name << " failed:** " << r.error << "\n";
  }
  md << "\n" << plot(dir, runs) << "\n" << extra.markdown;
  if (extra.per_request_table) per_request_table(md, runs);
  std::ofstream(dir + "/report.md") << md.str();

  nlohmann::json j;
  j["command"] = info.command;
  j["model"] = info.model;
  j["workload"] = info.workload;
  for (size_t i = 0; i < runs.size(); ++i) {
    nlohmann::json s;
    s["name"] = runs[i].name;
    s["failed"] = runs[i].failed;
    s["error"] = runs[i].error;
    s["startup_s"] = runs[i].startup_s;
    s["totals"] = {
        {"requests", tot[i].requests},           {"ttft_s", tot[i].ttft_s},
        {"prompt_tokens", tot[i].prompt_tokens}, {"cached_tokens", tot[i].cached_tokens},
        {"oracle_tokens", tot[i].oracle_tokens}, {"reuse_of_oracle", tot[i].reuse_of_oracle},
        {"decode_tok_s", tot[i].decode_tok_s},   {"bytes_written", tot[i].bytes_written},
        {"bytes_read", tot[i].bytes_read}};
    for (const auto& r : runs[i].requests) {
      s["requests"].push_back({{"session", r.session},
                               {"prompt_tokens", r.prompt_tokens},
                               {"oracle_tokens", r.oracle_tokens},
                               {"server_prompt_tokens", r.result.prompt_tokens},
                               {"cached_tokens", r.result.cached_tokens},
                               {"cache_source", r.result.cache_source},
                               {"served_by", r.result.served_by},
                               {"ttft_s", r.result.ttft_s},
                               {"total_s", r.result.total_s},
                               {"tokens", r.result.tokens},
                               {"decode_tok_s", r.result.decode_tok_s},
                               {"ok", r.result.ok},
                               {"error", r.result.error}});
    }
    j["servers"].push_back(s);
  }
  j.update(extra.json);
  std::ofstream(dir + "/report.json") << j.dump(2) << "\n";
  return md.str();
}

}  // namespace kvstash::loadgen
