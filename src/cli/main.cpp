// kvstash: an LLM inference server built around a persistent, tiered KV prefix cache.
#include <cstdlib>
#include <exception>
#include <iostream>
#include <map>
#include <string>

#include "cli/commands.h"
#include "util/memory.h"

int main(int argc, char** argv) {
  // The verbs that hold KV states reuse their large buffers instead of page-faulting them in
  // again on every request (util/memory.h). KVSTASH_SYSTEM_MALLOC=1 keeps glibc's defaults.
  if (argc > 1 && !std::getenv("KVSTASH_SYSTEM_MALLOC")) {
    const std::string verb = argv[1];
    if (verb == "serve" || verb == "generate" || verb == "demo") {
      kvstash::reexec_with_warm_malloc(argv);
    }
  }
  CLI::App app{"kvstash: LLM inference with a persistent, tiered KV prefix cache"};
  // A repeated flag overrides the earlier one, as in llama-server (scripts append overrides).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.require_subcommand(1);
  std::map<CLI::App*, kvstash::cli::Run> verbs;
  auto add = [&](const char* name, const char* help, kvstash::cli::Run (*fn)(CLI::App&)) {
    CLI::App* sub = app.add_subcommand(name, help);
    verbs[sub] = fn(*sub);
  };
  add("mkmodel", "write a random-weight GGUF model of a real shape", kvstash::cli::add_mkmodel);
  add("serve", "serve the OpenAI-compatible HTTP API", kvstash::cli::add_serve);
  add("generate", "run one prompt through the cache and print a JSON report",
      kvstash::cli::add_generate);
  add("cache", "inspect and maintain a cache directory", kvstash::cli::add_cache);
  add("bench", "run an agent workload against kvstash and llama-server, side by side",
      kvstash::cli::add_bench);
  add("demo", "cold prefill vs restored prefix on a long agent-like prompt",
      kvstash::cli::add_demo);
  add("replay", "drive the cache policy with a token-level trace, no model",
      kvstash::cli::add_replay);
  CLI11_PARSE(app, argc, argv);
  try {
    for (auto& [sub, run] : verbs) {
      if (sub->parsed()) return run();
    }
  } catch (const std::exception& e) {
    std::cerr << "kvstash: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
