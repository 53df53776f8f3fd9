// The verbs of the `kvstash` command. Each registers its options on a CLI11 subcommand and
// returns the function that runs it.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace kvstash::cli {

using Run = std::function<int()>;

Run add_mkmodel(CLI::App& app);
Run add_demo(CLI::App& app);
Run add_generate(CLI::App& app);
Run add_cache(CLI::App& app);
Run add_serve(CLI::App& app);
Run add_replay(CLI::App& app);
Run add_bench(CLI::App& app);

}  // namespace kvstash::cli
