#include "server/api.h"

namespace kvstash::server {

using nlohmann::json;

namespace {

struct Bad {
  std::string msg;
};

[[noreturn]] void fail(const std::string& msg) { throw Bad{msg}; }

const json* field(const json& j, const char* name) {
  auto it = j.find(name);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

double number(const json& j, const char* name, double lo, double hi) {
  const json& v = j.at(name);
  if (!v.is_number()) fail(std::string("'") + name + "' must be a number");
  const double d = v.get<double>();
  if (!(d >= lo && d <= hi)) {
    fail(std::string("'") + name + "' must be between " + json(lo).dump() + " and " +
         json(hi).dump() + ", got " + v.dump());
  }
  return d;
}

long long integer(const json& j, const char* name, long long lo, long long hi) {
  const json& v = j.at(name);
  if (!v.is_number_integer()) fail(std::string("'") + name + "' must be an integer");
  const long long x = v.get<long long>();
  if (x < lo || x > hi) {
    fail(std::string("'") + name + "' must be between " + std::to_string(lo) + " and " +
         std::to_string(hi) + ", got " + std::to_string(x));
  }
  return x;
}

bool boolean(const json& j, const char* name) {
  const json& v = j.at(name);
  if (!v.is_boolean()) fail(std::string("'") + name + "' must be true or false");
  return v.get<bool>();
}

std::string content_text(const json& c, size_t i) {
  if (c.is_string()) return c.get<std::string>();
  if (c.is_null()) return "";
  if (c.is_array()) {  // [{"type":"text","text":"..."}]
    std::string out;
    for (const auto& part : c) {
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
          !part["text"].is_string()) {
        fail("messages[" + std::to_string(i) + "].content: only text parts are supported");
      }
      out += part["text"].get<std::string>();
    }
    return out;
  }
  fail("messages[" + std::to_string(i) + "].content must be a string or an array of text parts");
}

void parse_gen(const json& j, Endpoint ep, GenerationParams& g) {
  constexpr long long kMaxTokens = 1 << 20;
  const char* max_name = ep == Endpoint::kLlamaCompletion ? "n_predict" : "max_tokens";
  if (field(j, max_name)) g.max_tokens = static_cast<int>(integer(j, max_name, -1, kMaxTokens));
  if (ep == Endpoint::kChat && field(j, "max_completion_tokens")) {
    g.max_tokens = static_cast<int>(integer(j, "max_completion_tokens", 0, kMaxTokens));
  }
  if (field(j, "temperature"))
    g.sampling.temperature = static_cast<float>(number(j, "temperature", 0, 100));
  if (field(j, "top_p")) g.sampling.top_p = static_cast<float>(number(j, "top_p", 0, 1));
  if (field(j, "min_p")) g.sampling.min_p = static_cast<float>(number(j, "min_p", 0, 1));
  if (field(j, "top_k")) g.sampling.top_k = static_cast<int>(integer(j, "top_k", 0, 1 << 20));
  if (field(j, "seed"))
    g.sampling.seed = static_cast<uint32_t>(integer(j, "seed", 0, 0xFFFFFFFFll));
  if (field(j, "stream")) g.stream = boolean(j, "stream");
  if (field(j, "return_progress")) g.return_progress = boolean(j, "return_progress");
  if (const json* s = field(j, "stop")) {
    if (s->is_string()) {
      g.stop.push_back(s->get<std::string>());
    } else if (s->is_array() && s->size() <= 16) {
      for (const auto& x : *s) {
        if (!x.is_string()) fail("'stop' must be a string or an array of strings");
        g.stop.push_back(x.get<std::string>());
      }
    } else {
      fail("'stop' must be a string or an array of at most 16 strings");
    }
    for (const auto& st : g.stop) {
      if (st.empty()) fail("'stop' strings must not be empty");
    }
  }
  if (const json* salt = field(j, "cache_salt")) {
    if (!salt->is_string() || salt->get<std::string>().size() > 256) {
      fail("'cache_salt' must be a string of at most 256 bytes");
    }
    g.cache_salt = salt->get<std::string>();
  }
  if (field(j, "cache_prompt") && !boolean(j, "cache_prompt")) {
    g.scope = cache::Scope{cache::Scope::Kind::kOff, 0};
  }
  if (const json* pc = field(j, "prefix_cache")) {
    if (!pc->is_object()) fail("'prefix_cache' must be an object like {\"scope\": \"auto:8\"}");
    std::optional<cache::Scope> scope;
    if (const json* s = field(*pc, "scope")) {
      std::string err;
      if (s->is_number_integer()) {
        scope = cache::parse_scope(std::to_string(s->get<long long>()), &err);
      } else if (s->is_string()) {
        scope = cache::parse_scope(s->get<std::string>(), &err);
      } else {
        fail("'prefix_cache.scope' must be a string (off, full, auto, auto:N) or a token count");
      }
      if (!scope) fail("prefix_cache.scope: " + err);
    }
    if (field(*pc, "window")) {
      const auto w = static_cast<uint32_t>(integer(*pc, "window", 1, 1000));
      if (!scope) scope = cache::Scope{cache::Scope::Kind::kAuto, w};
      if (scope->kind != cache::Scope::Kind::kAuto) {
        fail("'prefix_cache.window' applies only to the auto scope");
      }
      scope->n = w;
    }
    if (scope) g.scope = scope;
  }
}

}  // namespace

std::variant<ParsedRequest, ApiError> parse_request(Endpoint ep, const std::string& body,
                                                    int n_vocab) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for huge numbers
    return ApiError{400, std::string("request body is not valid JSON: ") + e.what()};
  }
  if (!j.is_object()) return ApiError{400, "request body must be a JSON object"};
  ParsedRequest r;
  r.endpoint = ep;
  try {
    if (ep == Endpoint::kChat) {
      const json* m = field(j, "messages");
      if (!m || !m->is_array() || m->empty()) fail("'messages' must be a non-empty array");
      for (size_t i = 0; i < m->size(); ++i) {
        const json& msg = (*m)[i];
        if (!msg.is_object()) fail("messages[" + std::to_string(i) + "] must be an object");
        const json* role = field(msg, "role");
        if (!role || !role->is_string()) {
          fail("messages[" + std::to_string(i) + "].role must be a string");
        }
        const std::string rs = role->get<std::string>();
        if (rs != "system" && rs != "user" && rs != "assistant" && rs != "tool" &&
            rs != "developer") {
          fail("messages[" + std::to_string(i) + "].role '" + rs +
               "' is not one of system, developer, user, assistant, tool");
        }
        const json* content = field(msg, "content");
        if (!content && rs != "assistant") {
          fail("messages[" + std::to_string(i) + "].content is required");
        }
        r.messages.push_back(
            {rs == "developer" ? "system" : rs, content ? content_text(*content, i) : ""});
      }
    } else {
      const json* p = field(j, "prompt");
      if (!p) fail("'prompt' is required");
      if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];
      if (p->is_string()) {
        r.prompt_text = p->get<std::string>();
        if (r.prompt_text.empty()) fail("'prompt' must not be empty");
      } else if (p->is_array() && !p->empty()) {
        for (const auto& t : *p) {
          if (!t.is_number_integer() || t.get<long long>() < 0 || t.get<long long>() >= n_vocab) {
            fail("'prompt' token ids must be integers in [0, " + std::to_string(n_vocab) + ")");
          }
          r.prompt_tokens.push_back(t.get<int32_t>());
        }
      } else {
        fail("'prompt' must be a non-empty string or array of token ids");
      }
    }
    parse_gen(j, ep, r.gen);
  } catch (const Bad& b) {
    return ApiError{400, b.msg};
  } catch (const json::exception& e) {
    return ApiError{400, std::string("malformed request: ") + e.what()};
  }
  return r;
}

json error_json(const ApiError& e) {
  return {{"error",
           {{"message", e.message},
            {"type", e.status >= 500 ? "server_error" : "invalid_request_error"},
            {"code", e.status}}}};
}

}  // namespace kvstash::server
