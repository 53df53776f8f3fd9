// Anthropic Messages requests as OpenAI chat requests (the internal request's shape).
//
// The translation follows the pinned llama-server's (tools/server/server-chat.cpp), so a Claude
// Code request renders to the same prompt tokens in both servers: system blocks joined into one
// system message, text blocks as text parts, tool_use blocks as tool calls (arguments as the JSON
// text of `input`), tool_result blocks as tool messages after their turn, thinking blocks as
// reasoning_content. Fields llama-server has no use for are accepted and ignored
// (cache_control, context_management, output_config, metadata, service_tier, ...).
#include "server/api.h"
#include "server/api_json.h"

namespace kvstash::server {

using namespace api_json;

namespace {

constexpr const char* kBillingPrefix = "x-anthropic-billing-header:";

// A tool_result's content: a string, or blocks whose text parts are joined.
std::string tool_result_text(const json& block, const std::string& where) {
  const json* c = field(block, "content");
  if (!c) return "";
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array()) fail(where + ".content must be a string or an array of content blocks");
  std::string text;
  for (size_t k = 0; k < c->size(); ++k) {
    const json& part = object_at((*c)[k], at(where + ".content", k));
    const std::string type = string_at(part, "type", at(where + ".content", k));
    if (type == "text") {
      text += string_at(part, "text", at(where + ".content", k));
    } else if (type == "image" || type == "document") {
      fail(at(where + ".content", k) + ": " + type + " input is not supported (text models only)");
    }
  }
  return text;
}

std::string system_text(const json& sys, BillingHeader billing) {
  if (sys.is_string()) return billing_header(sys.get<std::string>(), billing);
  if (!sys.is_array()) fail("'system' must be a string or an array of text blocks");
  std::string out;
  for (size_t i = 0; i < sys.size(); ++i) {
    const json& b = object_at(sys[i], at("system", i));
    if (string_at(b, "type", at("system", i)) != "text") {
      fail(at("system", i) + ".type must be \"text\"");
    }
    out += billing_header(string_at(b, "text", at("system", i)), billing);
  }
  return out;
}

// One Anthropic message: its chat message (if it has anything but tool results), then a tool
// message per tool_result block.
void add_message(const json& msg, size_t i, json& out) {
  const std::string where = at("messages", i);
  object_at(msg, where);
  const std::string role = string_at(msg, "role", where);
  if (role != "user" && role != "assistant" && role != "system") {
    fail(where + ".role '" + role + "' is not one of user, assistant");
  }
  const json* content = field(msg, "content");
  if (!content) fail(where + ".content is required");
  if (content->is_string()) {
    out.push_back({{"role", role}, {"content", *content}});
    return;
  }
  if (!content->is_array()) fail(where + ".content must be a string or an array of blocks");
  json parts = json::array(), calls = json::array(), results = json::array();
  std::string reasoning;
  for (size_t k = 0; k < content->size(); ++k) {
    const std::string bw = at(where + ".content", k);
    const json& b = object_at((*content)[k], bw);
    const std::string type = string_at(b, "type", bw);
    if (type == "text") {
      parts.push_back({{"type", "text"}, {"text", string_at(b, "text", bw)}});
    } else if (type == "thinking") {
      if (const json* t = field(b, "thinking"); t && t->is_string())
        reasoning += t->get<std::string>();
    } else if (type == "redacted_thinking") {
      // Encrypted by another server: nothing a local model can read.
    } else if (type == "tool_use") {
      if (role != "assistant") fail(bw + ": only assistant messages hold tool_use blocks");
      const json* input = field(b, "input");
      if (input && !input->is_object()) fail(bw + ".input must be an object");
      calls.push_back({{"id", string_at(b, "id", bw)},
                       {"type", "function"},
                       {"function",
                        {{"name", string_at(b, "name", bw)},
                         {"arguments", (input ? *input : json::object()).dump()}}}});
    } else if (type == "tool_result") {
      results.push_back({{"role", "tool"},
                         {"tool_call_id", string_at(b, "tool_use_id", bw)},
                         {"content", tool_result_text(b, bw)}});
    } else if (type == "image" || type == "document") {
      fail(bw + ": " + type + " input is not supported (this server runs text models only)");
    } else {
      fail(bw + ".type '" + type +
           "' is not supported (text, thinking, redacted_thinking, tool_use, tool_result)");
    }
  }
  if (!parts.empty() || !calls.empty() || !reasoning.empty()) {
    json m = {{"role", role}};
    if (!parts.empty()) {
      m["content"] = parts;
    } else {
      m["content"] = "";
    }
    if (!calls.empty()) m["tool_calls"] = calls;
    if (!reasoning.empty()) m["reasoning_content"] = reasoning;
    out.push_back(std::move(m));
  }
  for (auto& r : results) out.push_back(std::move(r));
}

json tools_of(const json& tools) {
  if (!tools.is_array()) fail("'tools' must be an array");
  json out = json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const json& t = object_at(tools[i], at("tools", i));
    // Server tools (web_search_20250305, bash_20250124, ...) run on Anthropic's side: a local
    // server has none. Custom tools have an input_schema.
    if (const json* type = field(t, "type"); type && *type != "custom") {
      if (!field(t, "input_schema")) continue;
    }
    const json* schema = field(t, "input_schema");
    if (schema && !schema->is_object()) fail(at("tools", i) + ".input_schema must be an object");
    out.push_back(
        {{"type", "function"},
         {"function",
          {{"name", string_at(t, "name", at("tools", i))},
           {"description",
            field(t, "description") ? string_at(t, "description", at("tools", i)) : std::string()},
           {"parameters", schema ? *schema : json::object()}}}});
  }
  return out;
}

json tool_choice_of(const json& tc) {
  object_at(tc, "'tool_choice'");
  const std::string type = string_at(tc, "type", "tool_choice");
  if (type == "auto") return "auto";
  if (type == "none") return "none";
  if (type == "any") return "required";
  if (type == "tool") {
    return {{"type", "function"}, {"function", {{"name", string_at(tc, "name", "tool_choice")}}}};
  }
  fail("'tool_choice.type' must be auto, any, tool or none; got '" + type + "'");
}

}  // namespace

std::string billing_header(std::string text, BillingHeader mode) {
  if (mode == BillingHeader::kKeep || text.rfind(kBillingPrefix, 0) != 0) return text;
  if (mode == BillingHeader::kDrop) {
    // The header ends at the line's end (Claude Code sends it as a block of its own).
    const size_t eol = text.find('\n');
    return eol == std::string::npos ? "" : text.substr(eol + 1);
  }
  // Five characters after "cch=", followed by ';' (llama-server's normalize_anthropic_billing_
  // header): replaced by "fffff". Any other shape is left as it is.
  const size_t cch = text.find("cch=", std::char_traits<char>::length(kBillingPrefix));
  if (cch != std::string::npos && cch + 9 < text.size() && text[cch + 9] == ';') {
    text.replace(cch + 4, 5, "fffff");
  }
  return text;
}

json anthropic_to_chat(const json& body, BillingHeader billing) {
  json out = json::object();
  json messages = json::array();
  if (const json* sys = field(body, "system")) {
    messages.push_back({{"role", "system"}, {"content", system_text(*sys, billing)}});
  }
  const json* m = field(body, "messages");
  if (!m || !m->is_array() || m->empty()) fail("'messages' must be a non-empty array");
  for (size_t i = 0; i < m->size(); ++i) add_message((*m)[i], i, messages);
  out["messages"] = std::move(messages);
  if (const json* tools = field(body, "tools")) {
    json t = tools_of(*tools);
    if (!t.empty()) out["tools"] = std::move(t);
  }
  if (const json* tc = field(body, "tool_choice")) {
    out["tool_choice"] = tool_choice_of(*tc);
    if (const json* dp = field(*tc, "disable_parallel_tool_use"); dp && dp->is_boolean()) {
      out["parallel_tool_calls"] = !dp->get<bool>();
    }
  }
  if (const json* mt = field(body, "max_tokens")) {
    if (!mt->is_number_integer() || mt->get<long long>() < 1) {
      fail("'max_tokens' must be an integer of at least 1");
    }
    out["max_tokens"] = *mt;
  }
  if (const json* ss = field(body, "stop_sequences")) {
    if (!ss->is_array()) fail("'stop_sequences' must be an array of strings");
    out["stop"] = *ss;
  }
  if (const json* th = field(body, "thinking")) {
    object_at(*th, "'thinking'");
    const std::string type = string_at(*th, "type", "thinking");
    if (type != "enabled" && type != "adaptive" && type != "disabled") {
      fail("'thinking.type' must be enabled, adaptive or disabled; got '" + type + "'");
    }
    if (type == "disabled") out["chat_template_kwargs"] = {{"enable_thinking", false}};
  }
  // Sampling and kvstash's own fields keep their chat names.
  for (const char* k :
       {"temperature", "top_p", "top_k", "min_p", "seed", "stream", "cache_salt", "prefix_cache",
        "cache_prompt", "logit_bias", "reasoning_format", "return_progress"}) {
    if (const json* v = field(body, k)) out[k] = *v;
  }
  if (const json* kw = field(body, "chat_template_kwargs")) {
    object_at(*kw, "'chat_template_kwargs'");
    for (const auto& [k, v] : kw->items()) out["chat_template_kwargs"][k] = v;
  }
  return out;
}

json anthropic_with_reply(const json& body, const engine::ChatMessageOut& reply) {
  json content = json::array();
  if (!reply.reasoning_content.empty()) {
    content.push_back(
        {{"type", "thinking"}, {"thinking", reply.reasoning_content}, {"signature", ""}});
  }
  if (!reply.content.empty()) content.push_back({{"type", "text"}, {"text", reply.content}});
  for (const auto& c : reply.tool_calls) {
    json input = json::parse(c.arguments, nullptr, false);
    content.push_back({{"type", "tool_use"},
                       {"id", c.id},
                       {"name", c.name},
                       {"input", input.is_object() ? input : json::object()}});
  }
  json next = body;
  const json* m = field(next, "messages");
  if (!m || !m->is_array()) fail("'messages' must be an array");
  next["messages"].push_back({{"role", "assistant"}, {"content", std::move(content)}});
  return next;
}

}  // namespace kvstash::server
