#include "subprocess.h"

namespace kvstash::fixtures {

ProcResult run_kvstash(const std::vector<std::string>& args,
                       const std::vector<std::pair<std::string, std::string>>& env) {
  std::vector<std::string> argv = {KVSTASH_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, {env, true});
}

}  // namespace kvstash::fixtures
