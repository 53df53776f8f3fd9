#include "server/api.h"

#include <algorithm>
#include <cmath>

#include "server/api_json.h"
#include "server/session_key.h"

namespace kvstash::server {

namespace api_json {

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

}  // namespace api_json

using namespace api_json;

namespace {

// The function of a tool or a tool call: {"type": "function", "function": {...}} (type optional).
const json& function_of(const json& wrapper, const std::string& where) {
  if (const json* type = field(wrapper, "type"); type && *type != "function") {
    fail(where + ".type must be \"function\"");
  }
  const json* fn = field(wrapper, "function");
  if (!fn) fail(where + ".function is required");
  return object_at(*fn, where + ".function");
}

// Content is a string, null, or an array of text parts, as llama-server takes it.
void check_content(const json& c, const std::string& where) {
  if (c.is_string() || c.is_null()) return;
  if (!c.is_array()) fail(where + " must be a string or an array of content parts");
  for (size_t k = 0; k < c.size(); ++k) {
    const json& part = object_at(c[k], at(where, k));
    const json* type = field(part, "type");
    if (!type || !type->is_string()) fail(at(where, k) + ".type must be a string");
    const std::string t = type->get<std::string>();
    if (t == "text") {
      string_at(part, "text", at(where, k));
    } else if (t == "image_url" || t == "input_audio" || t == "input_video" || t == "video_url") {
      fail(at(where, k) + ": " + t + " input is not supported (text models only)");
    } else {
      fail(at(where, k) + ".type '" + t + "' is not supported (only text)");
    }
  }
}

void check_message(const json& msg, size_t i) {
  const std::string where = at("messages", i);
  object_at(msg, where);
  const std::string role = string_at(msg, "role", where);
  if (role != "system" && role != "user" && role != "assistant" && role != "tool" &&
      role != "developer") {
    fail(where + ".role '" + role + "' is not one of system, developer, user, assistant, tool");
  }
  const json* content = field(msg, "content");
  const json* calls = field(msg, "tool_calls");
  if (role == "assistant") {
    if (!msg.contains("content") && !calls) {
      fail(where + ": an assistant message needs 'content' or 'tool_calls'");
    }
  } else if (!content) {
    fail(where + ".content is required");
  }
  if (content) check_content(*content, where + ".content");
  if (calls) {
    if (role != "assistant") fail(where + ".tool_calls: only assistant messages make tool calls");
    if (!calls->is_array()) fail(where + ".tool_calls must be an array");
    for (size_t k = 0; k < calls->size(); ++k) {
      const std::string cw = at(where + ".tool_calls", k);
      const json& call = object_at((*calls)[k], cw);
      const json* fn = &function_of(call, cw);
      string_at(*fn, "name", cw + ".function");
      const json* args = field(*fn, "arguments");
      if (args && !args->is_string() && !args->is_object()) {
        fail(cw + ".function.arguments must be a JSON string or an object");
      }
      if (const json* id = field(call, "id"); id && !id->is_string())
        fail(cw + ".id must be a string");
    }
  }
  for (const char* name : {"tool_call_id", "name", "reasoning_content"}) {
    if (const json* v = field(msg, name); v && !v->is_string()) {
      fail(where + "." + name + " must be a string");
    }
  }
}

std::string schema_text(const json& schema, const char* where) {
  if (!schema.is_object()) fail(std::string(where) + " must be a JSON schema object");
  if (schema.empty()) return R"({"type":"object"})";  // any object, as OpenAI's json_object
  return schema.dump();
}

// Everything of a chat request that goes into the template or constrains the reply.
void parse_chat(const json& j, engine::ChatInput& in) {
  const json* m = field(j, "messages");
  if (!m || !m->is_array() || m->empty()) fail("'messages' must be a non-empty array");
  for (size_t i = 0; i < m->size(); ++i) check_message((*m)[i], i);
  in.messages_json = m->dump();

  std::vector<std::string> names;
  if (const json* tools = field(j, "tools")) {
    if (!tools->is_array()) fail("'tools' must be an array");
    for (size_t i = 0; i < tools->size(); ++i) {
      const std::string tw = at("tools", i);
      const json* fn = &function_of(object_at((*tools)[i], tw), tw);
      const std::string& name = string_at(*fn, "name", tw + ".function");
      if (name.empty()) fail(tw + ".function.name must not be empty");
      if (const json* d = field(*fn, "description"); d && !d->is_string()) {
        fail(tw + ".function.description must be a string");
      }
      if (const json* params = field(*fn, "parameters"); params && !params->is_object()) {
        fail(tw + ".function.parameters must be a JSON schema object");
      }
      names.push_back(name);
    }
    if (!tools->empty()) in.tools_json = tools->dump();
  }
  if (const json* tc = field(j, "tool_choice")) {
    if (tc->is_string()) {
      in.tool_choice = tc->get<std::string>();
      if (in.tool_choice != "auto" && in.tool_choice != "none" && in.tool_choice != "required") {
        fail(
            "'tool_choice' must be \"auto\", \"none\", \"required\" or "
            "{\"type\": \"function\", \"function\": {\"name\": ...}}; got '" +
            in.tool_choice + "'");
      }
    } else if (tc->is_object()) {
      const json* fn = field(*tc, "function");
      if (!fn || !fn->is_object()) fail("'tool_choice.function' must be an object with a name");
      in.tool_name = string_at(*fn, "name", "tool_choice.function");
      if (std::find(names.begin(), names.end(), in.tool_name) == names.end()) {
        fail("'tool_choice' names the function '" + in.tool_name + "', which is not among 'tools'");
      }
    } else {
      fail("'tool_choice' must be a string or an object");
    }
    if (in.tool_choice == "required" && names.empty()) {
      fail("'tool_choice' is \"required\" but the request has no 'tools'");
    }
  }
  if (field(j, "parallel_tool_calls")) in.parallel_tool_calls = boolean(j, "parallel_tool_calls");
  if (field(j, "add_generation_prompt")) {
    in.add_generation_prompt = boolean(j, "add_generation_prompt");
  }

  if (const json* rf = field(j, "response_format")) {
    object_at(*rf, "'response_format'");
    const json* type = field(*rf, "type");
    const std::string t = type && type->is_string() ? type->get<std::string>() : "";
    if (t == "json_object") {
      in.json_schema = schema_text(rf->value("schema", json::object()), "response_format.schema");
    } else if (t == "json_schema") {
      const json* w = field(*rf, "json_schema");
      if (!w || !w->is_object()) {
        fail("'response_format.json_schema' must be an object like {\"schema\": {...}}");
      }
      in.json_schema =
          schema_text(w->value("schema", json::object()), "response_format.json_schema.schema");
    } else if (t != "text") {
      fail("'response_format.type' must be \"text\", \"json_object\" or \"json_schema\"");
    }
  }
  if (const json* js = field(j, "json_schema")) in.json_schema = schema_text(*js, "'json_schema'");
  if (const json* g = field(j, "grammar")) {
    if (!g->is_string()) fail("'grammar' must be a GBNF string");
    in.grammar = g->get<std::string>();
  }
  if (!in.json_schema.empty() && !in.grammar.empty()) {
    fail("'grammar' and a JSON schema cannot be combined");
  }

  if (const json* r = field(j, "reasoning_format")) {
    if (!r->is_string()) fail("'reasoning_format' must be a string");
    in.reasoning_format = r->get<std::string>();
  }
  if (const json* kw = field(j, "chat_template_kwargs")) {
    object_at(*kw, "'chat_template_kwargs'");
    for (const auto& [k, v] : kw->items()) in.template_kwargs[k] = v.dump();
  }
  if (auto it = in.template_kwargs.find("enable_thinking"); it != in.template_kwargs.end()) {
    if (it->second != "true" && it->second != "false") {
      fail("'chat_template_kwargs.enable_thinking' must be true or false");
    }
    in.enable_thinking = it->second == "true";
  }
  if (const json* e = field(j, "reasoning_effort")) {
    if (!e->is_string()) fail("'reasoning_effort' must be a string");
    if (*e == "none") {
      in.enable_thinking = false;
    } else {
      in.template_kwargs["reasoning_effort"] = e->dump();
    }
  }
}

// Completions take a GBNF grammar or a JSON schema directly (the HTTP layer turns a schema into
// a grammar, with llama.cpp).
void parse_grammar(const json& j, GenerationParams& g) {
  std::string schema;
  if (const json* rf = field(j, "response_format"); rf && rf->is_object()) {
    if (const json* type = field(*rf, "type"); type && *type == "json_schema") {
      const json* w = field(*rf, "json_schema");
      if (!w || !w->is_object()) fail("'response_format.json_schema' must be an object");
      schema =
          schema_text(w->value("schema", json::object()), "response_format.json_schema.schema");
    } else if (type && *type == "json_object") {
      schema = schema_text(rf->value("schema", json::object()), "response_format.schema");
    }
  }
  if (const json* js = field(j, "json_schema")) schema = schema_text(*js, "'json_schema'");
  const json* gr = field(j, "grammar");
  if (gr && !gr->is_string()) fail("'grammar' must be a GBNF string");
  if (gr && !schema.empty()) fail("'grammar' and a JSON schema cannot be combined");
  g.json_schema = schema;
  if (gr) g.sampling.grammar.grammar = gr->get<std::string>();
}

// Completions: a text prompt or token ids.
void parse_prompt(const json& j, ParsedRequest& r, int n_vocab) {
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

void parse_sampling(const json& j, Api ep, engine::SamplingParams& s, bool& logprobs, int n_vocab) {
  if (field(j, "repeat_penalty"))
    s.repeat_penalty = static_cast<float>(number(j, "repeat_penalty", 0.01, 10));
  if (field(j, "frequency_penalty")) {
    s.frequency_penalty = static_cast<float>(number(j, "frequency_penalty", -2, 2));
  }
  if (field(j, "presence_penalty")) {
    s.presence_penalty = static_cast<float>(number(j, "presence_penalty", -2, 2));
  }
  for (const char* name : {"repeat_last_n", "penalty_last_n"}) {
    if (field(j, name)) s.penalty_last_n = static_cast<int>(integer(j, name, -1, 1 << 20));
  }
  if (field(j, "typical_p")) s.typical_p = static_cast<float>(number(j, "typical_p", 0, 1));
  if (const json* lb = field(j, "logit_bias")) {
    auto add = [&](long long id, const json& bias, const std::string& where) {
      if (id < 0 || id >= n_vocab) {
        fail(where + ": token id " + std::to_string(id) + " is not in [0, " +
             std::to_string(n_vocab) + ")");
      }
      float b;
      if (bias.is_boolean() && !bias.get<bool>()) {
        b = -INFINITY;  // llama.cpp's way of banning a token
      } else if (bias.is_number()) {
        b = bias.get<float>();
      } else {
        fail(where + ": a bias must be a number (or false to ban the token)");
      }
      s.logit_bias.push_back({static_cast<engine::Token>(id), b});
    };
    if (lb->is_object()) {  // OpenAI: {"token id": bias}
      for (const auto& [k, v] : lb->items()) {
        size_t used = 0;
        long long id = -1;
        try {
          id = std::stoll(k, &used);
        } catch (const std::exception&) {
        }
        if (used == 0 || used != k.size())
          fail("'logit_bias' keys must be token ids, got '" + k + "'");
        add(id, v, "logit_bias");
      }
    } else if (lb->is_array()) {  // llama.cpp: [[id, bias], ...]
      if (lb->size() > static_cast<size_t>(n_vocab)) {
        fail("'logit_bias' has more entries than the vocabulary has tokens (" +
             std::to_string(n_vocab) + ")");
      }
      for (size_t i = 0; i < lb->size(); ++i) {
        const json& e = (*lb)[i];
        if (!e.is_array() || e.size() != 2 || !e[0].is_number_integer()) {
          fail(at("logit_bias", i) + " must be [token id, bias]");
        }
        add(e[0].get<long long>(), e[1], at("logit_bias", i));
      }
    } else {
      fail("'logit_bias' must be an object {\"token id\": bias} or an array of [id, bias]");
    }
  }
  if (field(j, "n_probs")) {
    s.n_probs = static_cast<int>(integer(j, "n_probs", 0, 100));
    logprobs = s.n_probs > 0;
  }
  if (const json* lp = field(j, "logprobs")) {
    if (is_chat(ep)) {
      logprobs = boolean(j, "logprobs");
      if (field(j, "top_logprobs")) {
        if (!logprobs) fail("'top_logprobs' needs 'logprobs': true");
        s.n_probs = static_cast<int>(integer(j, "top_logprobs", 0, 20));
      }
    } else {  // legacy completions: logprobs is the number of top tokens
      if (!lp->is_number_integer()) fail("'logprobs' must be an integer (the top tokens to list)");
      s.n_probs = static_cast<int>(integer(j, "logprobs", 0, 20));
      logprobs = true;
    }
  }
}

void parse_gen(const json& j, Api ep, GenerationParams& g) {
  constexpr long long kMaxTokens = 1 << 20;
  const char* max_name = ep == Api::kLlamaCompletion ? "n_predict" : "max_tokens";
  if (field(j, max_name)) g.max_tokens = static_cast<int>(integer(j, max_name, -1, kMaxTokens));
  if (is_chat(ep) && field(j, "max_completion_tokens")) {
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
      if (st.size() > kMaxStopBytes) {
        fail("'stop' strings must be at most " + std::to_string(kMaxStopBytes) + " bytes");
      }
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

const char* api_name(Api api) {
  switch (api) {
    case Api::kChat:
      return "chat";
    case Api::kCompletions:
      return "completions";
    case Api::kLlamaCompletion:
      return "completion";
    case Api::kMessages:
      return "messages";
    case Api::kResponses:
      return "responses";
  }
  return "";
}

bool is_chat(Api api) {
  return api == Api::kChat || api == Api::kMessages || api == Api::kResponses;
}

json parse_json_body(const std::string& body, int max_depth) {
  // Objects keep their keys in order in a vector (ordered_json): each key is looked up among
  // the object's others as it is added, so an object's keys are bounded, as is the nesting.
  std::vector<size_t> keys;  // per open container: its keys so far
  auto check = [&](int depth, json::parse_event_t ev, json&) {
    using E = json::parse_event_t;
    if (ev == E::object_start || ev == E::array_start) {
      if (depth >= max_depth) {
        throw std::invalid_argument("request body nests arrays and objects more than " +
                                    std::to_string(max_depth) + " deep");
      }
      keys.push_back(0);
    } else if (ev == E::object_end || ev == E::array_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (ev == E::key && !keys.empty() && ++keys.back() > kMaxObjectKeys) {
      throw std::invalid_argument("request body has an object of more than " +
                                  std::to_string(kMaxObjectKeys) +
                                  " members (logit_bias: use the [[id, bias], ...] form)");
    }
    return true;
  };
  try {
    return json::parse(body, check);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for huge numbers
    throw std::invalid_argument(std::string("request body is not valid JSON: ") + e.what());
  }
}

void check_grammar_size(const std::string& g, size_t max_bytes) {
  if (g.size() > max_bytes) {
    throw std::invalid_argument("the grammar has " + std::to_string(g.size()) +
                                " bytes; this server accepts at most " + std::to_string(max_bytes) +
                                " (--max-grammar-bytes)");
  }
  // Groups nest by parentheses outside literals ("..."), character classes ([...]) and comments.
  int depth = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const char c = g[i];
    if (c == '"' || c == '[') {
      const char close = c == '"' ? '"' : ']';
      for (++i; i < g.size() && g[i] != close; ++i) {
        if (g[i] == '\\') ++i;
      }
    } else if (c == '#') {
      while (i < g.size() && g[i] != '\n') ++i;
    } else if (c == '(' && ++depth > kMaxGrammarDepth) {
      throw std::invalid_argument("the grammar nests groups more than " +
                                  std::to_string(kMaxGrammarDepth) + " deep");
    } else if (c == ')') {
      depth = std::max(0, depth - 1);
    }
  }
}

namespace {

// Counted before the messages are checked and dumped one by one.
void check_counts(const json& j, const Limits& lim) {
  if (const json* m = field(j, "messages"); m && m->is_array()) {
    if (m->size() > static_cast<size_t>(lim.messages)) {
      fail("the conversation has " + std::to_string(m->size()) +
           " messages; this server accepts at most " + std::to_string(lim.messages) +
           " (--max-messages)");
    }
  }
  if (const json* t = field(j, "tools"); t && t->is_array()) {
    if (t->size() > static_cast<size_t>(lim.tools)) {
      fail("the request has " + std::to_string(t->size()) + " tools; this server accepts at most " +
           std::to_string(lim.tools) + " (--max-tools)");
    }
  }
}

// The grammars the request gives (a chat's or a completion's), before llama.cpp parses them.
void check_grammars(const ParsedRequest& r, const Limits& lim) {
  for (const std::string* gbnf : {&r.chat.grammar, &r.gen.sampling.grammar.grammar}) {
    try {
      check_grammar_size(*gbnf, lim.grammar_bytes);
    } catch (const std::invalid_argument& e) {
      fail(e.what());
    }
  }
}

}  // namespace

std::variant<ParsedRequest, ApiError> parse_request(Api api, const std::string& body,
                                                    const ApiOptions& opt) {
  json j;
  try {
    j = parse_json_body(body, opt.limits.json_depth);
  } catch (const std::invalid_argument& e) {
    return ApiError{400, e.what()};
  }
  if (!j.is_object()) return ApiError{400, "request body must be a JSON object"};
  ParsedRequest r;
  r.api = api;
  r.session_fields = session_fields(j);
  try {
    if (api == Api::kMessages) j = anthropic_to_chat(j, opt.billing);
    if (api == Api::kResponses) j = responses_to_chat(j);
    check_counts(j, opt.limits);
    if (is_chat(api)) {
      parse_chat(j, r.chat);
    } else {
      parse_prompt(j, r, opt.n_vocab);
      parse_grammar(j, r.gen);
    }
    parse_gen(j, api, r.gen);
    parse_sampling(j, api, r.gen.sampling, r.gen.logprobs, opt.n_vocab);
    check_grammars(r, opt.limits);
  } catch (const Bad& b) {
    return ApiError{400, b.msg};
  } catch (const json::exception& e) {
    return ApiError{400, std::string("malformed request: ") + e.what()};
  }
  return r;
}

json with_reply(Api api, const json& body, const engine::ChatMessageOut& reply) {
  if (api == Api::kMessages) return anthropic_with_reply(body, reply);
  if (api == Api::kResponses) return responses_with_reply(body, reply);
  json next = body;
  json msg = {{"role", "assistant"}};
  msg["content"] =
      reply.content.empty() && !reply.tool_calls.empty() ? json(nullptr) : json(reply.content);
  if (!reply.tool_calls.empty()) {
    json calls = json::array();
    for (const auto& c : reply.tool_calls) {
      calls.push_back({{"id", c.id},
                       {"type", "function"},
                       {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
    }
    msg["tool_calls"] = std::move(calls);
  }
  const json* m = field(next, "messages");
  if (!m || !m->is_array()) fail("'messages' must be an array");
  next["messages"].push_back(std::move(msg));
  return next;
}

nlohmann::json error_json(Api api, const ApiError& e) {
  if (api == Api::kMessages) {
    // Anthropic's error types by status.
    const char* type = e.status == 401   ? "authentication_error"
                       : e.status == 403 ? "permission_error"
                       : e.status == 404 ? "not_found_error"
                       : e.status == 413 ? "request_too_large"
                       : e.status == 429 ? "rate_limit_error"
                       : e.status == 503 ? "overloaded_error"
                       : e.status >= 500 ? "api_error"
                                         : "invalid_request_error";
    return {{"type", "error"}, {"error", {{"type", type}, {"message", e.message}}}};
  }
  return {{"error",
           {{"message", e.message},
            {"type", e.status >= 500 ? "server_error" : "invalid_request_error"},
            {"code", e.status}}}};
}

}  // namespace kvstash::server
