// The checks every request parser shares: typed field access that fails with a message naming
// the field (api.cpp, api_anthropic.cpp, api_responses.cpp; not for other folders).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace kvstash::server::api_json {

// Objects keep their keys in the client's order: tools and schemas reach the template and the
// grammar as the client wrote them (as llama-server passes them), or the prompt differs.
using json = nlohmann::ordered_json;

// What the client got wrong; parse_request turns it into a 400.
struct Bad {
  std::string msg;
};

[[noreturn]] inline void fail(const std::string& msg) { throw Bad{msg}; }

// The field, or null when it is missing or JSON null.
inline const json* field(const json& j, const char* name) {
  auto it = j.find(name);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

inline std::string at(const std::string& where, size_t i) {
  return where + "[" + std::to_string(i) + "]";
}

inline const json& object_at(const json& j, const std::string& where) {
  if (!j.is_object()) fail(where + " must be an object");
  return j;
}

inline const std::string& string_at(const json& j, const char* name, const std::string& where) {
  const json* v = field(j, name);
  if (!v || !v->is_string()) fail(where + "." + name + " must be a string");
  return v->get_ref<const std::string&>();
}

double number(const json& j, const char* name, double lo, double hi);
long long integer(const json& j, const char* name, long long lo, long long hi);
bool boolean(const json& j, const char* name);

}  // namespace kvstash::server::api_json

namespace kvstash::engine {
struct ChatMessageOut;
}

namespace kvstash::server {
// The dialects' parts of with_reply (api.h).
api_json::json anthropic_with_reply(const api_json::json& body, const engine::ChatMessageOut& r);
api_json::json responses_with_reply(const api_json::json& body, const engine::ChatMessageOut& r);
}  // namespace kvstash::server
