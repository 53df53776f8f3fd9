#include "util/size.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace kvstash {

uint64_t parse_size(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  if (i == 0) throw std::invalid_argument("not a size: '" + text + "' (e.g. 40G, 512M, 0)");
  double v;
  try {
    v = std::stod(text.substr(0, i));
  } catch (const std::exception&) {
    throw std::invalid_argument("not a size: '" + text + "'");
  }
  std::string unit = text.substr(i);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();
  if (unit.size() > 1 && unit.back() == 'I') unit.pop_back();
  const std::string units = "KMGTP";
  if (unit.size() > 1 || (unit.size() == 1 && units.find(unit[0]) == std::string::npos)) {
    throw std::invalid_argument("unknown size unit in '" + text + "' (use K, M, G, T)");
  }
  if (unit.size() == 1) v *= std::pow(1024.0, double(units.find(unit[0]) + 1));
  if (!(v < 9.2e18)) throw std::invalid_argument("size out of range: '" + text + "'");
  return static_cast<uint64_t>(v);
}

std::string format_size(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u ? "%.2f %s" : "%.0f %s", v, units[u]);
  return buf;
}

}  // namespace kvstash
