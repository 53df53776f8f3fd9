#include "util/memory.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace kvstash {

void reexec_with_warm_malloc(char** argv) {
  const char* t = std::getenv("GLIBC_TUNABLES");
  if (t && std::strstr(t, "glibc.malloc.")) return;  // the user's (or our earlier) settings
  std::string v = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736";
  if (t && *t) v = std::string(t) + ":" + v;
  ::setenv("GLIBC_TUNABLES", v.c_str(), 1);
  ::execv("/proc/self/exe", argv);
  ::unsetenv("GLIBC_TUNABLES");  // exec failed: go on with the defaults
}

}  // namespace kvstash
