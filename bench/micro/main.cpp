// Micro-benchmarks of the cache (google-benchmark): prefix index lookup, chunk hashing, and the
// store/load throughput of KV-sized objects through the disk tier and the PrefixCache, each next
// to the raw sequential write()/read() throughput of the same bytes in the same directory and the
// same run, so the report is a ratio to the physical limit. With KVSTASH_BENCH_MODEL set, also the
// whole engine restore (PrefixCache load + restore_plan into a llama.cpp context).
//
//   kvstash-bench-micro [google-benchmark flags] [--bench_dir=DIR] [--tok_bytes=114688,147456]
//                       [--objects=8] [--index_chunks=1000,10000,100000] [--engine_tokens=4096]
//
// DIR (or $KVSTASH_BENCH_DIR; default a fresh directory under /tmp) is removed at the end.
// --tok_bytes: KV bytes per token of the shapes to test; a chunk object is 256 tokens of it
// (qwen3-0.6b f16: 114688 B/token = 28 MiB per chunk; the 8B shape: 147456 B/token = 36 MiB).
// --objects: chunk objects written or read per iteration.
// Cold reads drop the files' clean pages with posix_fadvise(POSIX_FADV_DONTNEED) before each
// iteration (outside the timed region); the program checks with mincore() that it worked.
// See bench/MICRO.md for the commands and the figures.
//
// One file per group (micro.h lists them); this one parses the flags, sets up the bench directory,
// registers the groups and runs them.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "micro.h"
#include "ratio_table.h"

namespace fs = std::filesystem;
using namespace kvstash::micro;

namespace {

std::vector<uint64_t> parse_list(const std::string& s) {
  std::vector<uint64_t> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t comma = s.find(',', pos);
    const std::string part = s.substr(pos, comma == std::string::npos ? comma : comma - pos);
    if (!part.empty()) out.push_back(std::strtoull(part.c_str(), nullptr, 10));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  // Our flags first; the rest goes to google-benchmark.
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* flag) -> const char* {
      const std::string f = std::string(flag) + "=";
      return a.rfind(f, 0) == 0 ? argv[i] + f.size() : nullptr;
    };
    if (const char* v = value("--bench_dir")) {
      g_flags.dir = v;
    } else if (const char* v = value("--tok_bytes")) {
      g_flags.tok_bytes = parse_list(v);
    } else if (const char* v = value("--objects")) {
      g_flags.objects = static_cast<uint32_t>(std::max(1ull, std::strtoull(v, nullptr, 10)));
    } else if (const char* v = value("--index_chunks")) {
      g_flags.index_chunks = parse_list(v);
    } else if (const char* v = value("--engine_tokens")) {
      g_flags.engine_tokens = parse_list(v);
    } else {
      rest.push_back(argv[i]);
    }
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  if (benchmark::ReportUnrecognizedArguments(n, rest.data())) return 1;

  std::string base = g_flags.dir;
  if (base.empty()) {
    if (const char* e = std::getenv("KVSTASH_BENCH_DIR"); e && *e) base = e;
  }
  bool made_temp = false;
  if (base.empty()) {
    char tmpl[] = "/tmp/kvstash-bench-micro.XXXXXX";
    if (!::mkdtemp(tmpl)) die("mkdtemp");
    base = tmpl;
    made_temp = true;
  }
  g_flags.dir = base + (made_temp ? "" : "/kvstash-bench-micro");
  fs::create_directories(g_flags.dir);
  std::fprintf(stderr, "bench dir: %s\n", g_flags.dir.c_str());

  register_index();
  register_store_load();
  register_engine();
  register_remote_auth();
  Recorder rec;
  const size_t ran = benchmark::RunSpecifiedBenchmarks(&rec);
  rec.print_ratios();
  benchmark::Shutdown();
  std::error_code ec;
  fs::remove_all(g_flags.dir, ec);
  for (const auto& f : rec.failed()) std::fprintf(stderr, "error: %s\n", f.c_str());
  if (ran == 0) std::fprintf(stderr, "error: no benchmark matches the filter\n");
  return rec.failed().empty() && ran > 0 ? 0 : 1;
}
