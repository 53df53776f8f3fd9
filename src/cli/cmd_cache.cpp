// kvstash cache ls|inspect|verify|gc|stats|clear: maintenance of a cache directory.
//
// A directory holds one namespace per model fingerprint (DIR/<fingerprint>/); these verbs work on
// every namespace, or on one with --fingerprint, and need no model.
#include <filesystem>
#include <iostream>

#include "cache/prefix_cache.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "tiers/disk_tier.h"
#include "util/size.h"

namespace kvstash::cli {

namespace fs = std::filesystem;

namespace {

struct CacheVerbOpts {
  CacheFlags cache;
  std::string fingerprint, key;
};

std::optional<std::array<uint8_t, 16>> parse_fp(const std::string& hex) {
  auto k = cache::Key::from_hex(hex);
  if (!k) return std::nullopt;
  std::array<uint8_t, 16> fp;
  for (int i = 0; i < 8; ++i) {
    fp[i] = static_cast<uint8_t>(k->hi >> (56 - 8 * i));
    fp[8 + i] = static_cast<uint8_t>(k->lo >> (56 - 8 * i));
  }
  return fp;
}

// Calls fn for each namespace's cache.
void for_each_namespace(const CacheVerbOpts& o,
                        const std::function<void(const std::string&, cache::PrefixCache&)>& fn) {
  if (o.cache.disk_dir().empty()) throw std::invalid_argument("--cache-dir DIR is required");
  if (!fs::is_directory(o.cache.dir))
    throw std::invalid_argument(o.cache.dir + " is not a directory");
  for (const auto& de : fs::directory_iterator(o.cache.dir)) {
    const std::string name = de.path().filename().string();
    const auto fp = parse_fp(name);
    if (!fp || !de.is_directory()) continue;
    if (!o.fingerprint.empty() && name != o.fingerprint) continue;
    auto cfg = o.cache.config(1, false);  // chunk size only matters to lookups
    cache::PrefixCache c(cfg, *fp);
    fn(name, c);
  }
}

std::string age(int64_t ms) {
  const int64_t s = (cache::now_ms() - ms) / 1000;
  if (s < 120) return std::to_string(s) + "s";
  if (s < 7200) return std::to_string(s / 60) + "m";
  return std::to_string(s / 3600) + "h";
}

}  // namespace

Run add_cache(CLI::App& app) {
  auto o = std::make_shared<CacheVerbOpts>();
  app.require_subcommand(1);
  auto common = [&](CLI::App* sub) {
    sub->add_option("--cache-dir", o->cache.dir, "cache directory (default: serve's)")
        ->capture_default_str();
    sub->add_option("--fingerprint", o->fingerprint, "only this namespace");
  };
  auto* ls = app.add_subcommand("ls", "list the entries (checkpoints) of each namespace");
  auto* inspect = app.add_subcommand("inspect", "show one object");
  auto* verify =
      app.add_subcommand("verify", "read and checksum every object; remove damaged ones");
  auto* gc =
      app.add_subcommand("gc", "remove damaged, temporary and orphaned files; enforce the budget");
  auto* stats = app.add_subcommand("stats", "totals per namespace");
  auto* clear = app.add_subcommand("clear", "remove every object");
  for (auto* s : {ls, inspect, verify, gc, stats, clear}) common(s);
  inspect->add_option("key", o->key, "object key (32 hex digits)")->required();
  gc->add_option("--cache-disk-budget", o->cache.disk_budget, "evict down to this size");

  return [o, ls, inspect, verify, gc, stats, clear] {
    // Names are hex digests, never paths: nothing given here can reach outside DIR.
    if (!o->fingerprint.empty() && !cache::Key::from_hex(o->fingerprint)) {
      throw std::invalid_argument("--fingerprint must be 32 hex digits (a namespace under DIR)");
    }
    if (inspect->parsed() && !cache::Key::from_hex(o->key)) {
      throw std::invalid_argument("'" + o->key + "' is not an object key (32 hex digits)");
    }
    int rc = 0;
    for_each_namespace(*o, [&](const std::string& ns, cache::PrefixCache& c) {
      auto objs = c.objects();
      if (ls->parsed()) {
        std::cout << "namespace " << ns << "\n";
        std::sort(objs.begin(), objs.end(), [](const cache::Node& a, const cache::Node& b) {
          return a.meta.n_tokens < b.meta.n_tokens;
        });
        size_t chunks = 0;
        uint64_t chunk_bytes = 0;
        for (const auto& n : objs) {
          if (n.meta.kind == cache::ObjKind::kChunk) {
            ++chunks;
            chunk_bytes += n.meta.payload_bytes;
            continue;
          }
          std::printf("  entry %s tokens=%u reason=%s hits=%u tail=%s age=%s\n",
                      n.meta.key.hex().c_str(), n.meta.n_tokens, cache::reason_name(n.meta.reason),
                      n.stats.hits, format_size(n.meta.payload_bytes).c_str(),
                      age(std::max(n.stats.last_used_ms, n.meta.created_ms)).c_str());
        }
        std::printf("  %zu chunks, %s\n", chunks, format_size(chunk_bytes).c_str());
      } else if (inspect->parsed()) {
        for (const auto& n : objs) {
          if (n.meta.key.hex() != o->key) continue;
          std::printf(
              "%s %s\n  namespace %s\n  parent %s depth %u tokens %u\n  payload %s\n"
              "  hits %u, created %s ago, last used %s ago\n",
              n.meta.kind == cache::ObjKind::kChunk ? "chunk" : "entry", n.meta.key.hex().c_str(),
              ns.c_str(), n.meta.parent.hex().c_str(), n.meta.depth, n.meta.n_tokens,
              format_size(n.meta.payload_bytes).c_str(), n.stats.hits,
              age(n.meta.created_ms).c_str(),
              n.stats.last_used_ms ? age(n.stats.last_used_ms).c_str() : "never");
          if (n.meta.kind == cache::ObjKind::kEntry) {
            std::printf("  reason %s%s\n", cache::reason_name(n.meta.reason),
                        n.meta.has_logits ? ", with logits" : "");
          }
        }
      } else if (verify->parsed()) {
        size_t ok = 0, bad = 0;
        for (const auto& n : objs) {
          cache::RestorePlan p;
          if (n.meta.kind == cache::ObjKind::kChunk)
            p.chunks = {n.meta.key};
          else
            p.entry = n.meta.key;
          (c.load(p) ? ok : bad)++;
        }
        std::printf("namespace %s: %zu objects verified, %zu damaged and removed\n", ns.c_str(), ok,
                    bad);
        if (bad) rc = 1;
      } else if (stats->parsed()) {
        const auto s = c.stats();
        std::printf("namespace %s: %zu entries, %zu chunks, %s on disk\n", ns.c_str(), s.entries,
                    s.chunks, format_size(s.disk_bytes).c_str());
      } else if (clear->parsed()) {
        c.clear();
        std::printf("namespace %s: cleared %zu objects\n", ns.c_str(), objs.size());
      } else if (gc->parsed()) {
        // Opening the cache already removed damaged, temporary and orphaned files.
        c.enforce_budget();
        const auto s = c.stats();
        std::printf("namespace %s: %zu entries, %zu chunks, %s on disk\n", ns.c_str(), s.entries,
                    s.chunks, format_size(s.disk_bytes).c_str());
      }
    });
    return rc;
  };
}

}  // namespace kvstash::cli
