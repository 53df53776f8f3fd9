#include "replay/trace.h"

#include <fstream>
#include <istream>
#include <nlohmann/json.hpp>
#include <ostream>

namespace kvstash::replay {

namespace {

using json = nlohmann::json;

[[noreturn]] void fail(const std::string& name, size_t line_no, const std::string& why) {
  throw TraceError(name + ":" + std::to_string(line_no) + ": " + why);
}

}  // namespace

TraceRecord parse_trace_line(const std::string& line, const std::string& name, size_t line_no) {
  json j;
  try {
    j = json::parse(line);
  } catch (const json::parse_error& e) {
    fail(name, line_no, std::string("not JSON (") + e.what() + ")");
  }
  if (!j.is_object()) fail(name, line_no, "a record must be a JSON object");
  auto need = [&](const char* key) -> const json& {
    if (!j.contains(key)) fail(name, line_no, std::string("missing \"") + key + "\"");
    return j[key];
  };
  auto uint_of = [&](const json& v, const std::string& what, uint64_t max) -> uint64_t {
    if (!v.is_number_unsigned()) {
      fail(name, line_no, what + " must be a non-negative integer");
    }
    const uint64_t x = v.get<uint64_t>();
    if (x > max) fail(name, line_no, what + " is too large (" + std::to_string(x) + ")");
    return x;
  };
  const json& type = need("type");
  if (!type.is_string()) fail(name, line_no, "\"type\" must be a string");
  TraceRecord r;
  const std::string t = type.get<std::string>();
  if (t == "restart") {
    r.type = TraceRecord::Type::kRestart;
    for (const auto& [k, v] : j.items()) {
      if (k != "type") fail(name, line_no, "unknown key \"" + k + "\" in a restart record");
    }
    return r;
  }
  if (t != "request") {
    fail(name, line_no, "unknown record type \"" + t + "\" (expected request or restart)");
  }
  for (const auto& [k, v] : j.items()) {
    if (k != "type" && k != "session" && k != "tokens" && k != "boundaries" && k != "anchor" &&
        k != "gen") {
      fail(name, line_no,
           "unknown key \"" + k +
               "\" in a request record (type, session, tokens, boundaries, anchor, gen)");
    }
  }
  if (j.contains("session")) {
    if (!j["session"].is_string()) fail(name, line_no, "\"session\" must be a string");
    r.session = j["session"].get<std::string>();
  }
  const json& toks = need("tokens");
  if (!toks.is_array() || toks.empty()) {
    fail(name, line_no, "\"tokens\" must be a non-empty array of token ids");
  }
  r.tokens.reserve(toks.size());
  for (size_t i = 0; i < toks.size(); ++i) {
    r.tokens.push_back(static_cast<cache::Token>(
        uint_of(toks[i], "tokens[" + std::to_string(i) + "]", INT32_MAX)));
  }
  const auto n = static_cast<uint32_t>(r.tokens.size());
  if (j.contains("boundaries")) {
    const json& b = j["boundaries"];
    if (!b.is_array()) fail(name, line_no, "\"boundaries\" must be an array of positions");
    for (size_t i = 0; i < b.size(); ++i) {
      const std::string what = "boundaries[" + std::to_string(i) + "]";
      const auto x = static_cast<uint32_t>(uint_of(b[i], what, UINT32_MAX));
      if (x >= n) {
        fail(name, line_no,
             what + " = " + std::to_string(x) + " is not inside the prompt of " +
                 std::to_string(n) + " tokens");
      }
      if (!r.boundaries.empty() && x <= r.boundaries.back()) {
        fail(
            name, line_no,
            "\"boundaries\" must be strictly ascending (" + what + " = " + std::to_string(x) + ")");
      }
      r.boundaries.push_back(x);
    }
  }
  if (j.contains("anchor")) {
    r.anchor = static_cast<uint32_t>(uint_of(j["anchor"], "\"anchor\"", UINT32_MAX));
    if (r.anchor > n) {
      fail(name, line_no,
           "\"anchor\" " + std::to_string(r.anchor) + " is past the prompt end " +
               std::to_string(n));
    }
  }
  if (j.contains("gen")) r.gen = static_cast<uint32_t>(uint_of(j["gen"], "\"gen\"", 1u << 24));
  return r;
}

std::vector<TraceRecord> read_trace(std::istream& in, const std::string& name) {
  std::vector<TraceRecord> out;
  std::string line;
  size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    out.push_back(parse_trace_line(line, name, line_no));
  }
  if (in.bad()) throw TraceError(name + ": read error");
  return out;
}

std::vector<TraceRecord> read_trace_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw TraceError("cannot open trace " + path);
  return read_trace(f, path);
}

std::string trace_line(const TraceRecord& r) {
  if (r.type == TraceRecord::Type::kRestart) return R"({"type":"restart"})";
  std::string s = R"({"type":"request","session":)" + json(r.session).dump() + R"(,"tokens":[)";
  for (size_t i = 0; i < r.tokens.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(r.tokens[i]);
  }
  s += R"(],"boundaries":[)";
  for (size_t i = 0; i < r.boundaries.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(r.boundaries[i]);
  }
  s += R"(],"anchor":)" + std::to_string(r.anchor) + R"(,"gen":)" + std::to_string(r.gen) + "}";
  return s;
}

void write_trace(std::ostream& out, const std::vector<TraceRecord>& records) {
  for (const auto& r : records) out << trace_line(r) << '\n';
}

void write_trace_file(const std::string& path, const std::vector<TraceRecord>& records) {
  std::ofstream f(path);
  if (!f) throw TraceError("cannot write trace " + path);
  write_trace(f, records);
  if (!f) throw TraceError("write error on " + path);
}

}  // namespace kvstash::replay
