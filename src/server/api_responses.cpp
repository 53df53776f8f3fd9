// OpenAI Responses requests as OpenAI chat requests (the internal request's shape).
//
// The translation follows the pinned llama-server's (tools/server/server-chat.cpp), so a Codex
// request renders to the same prompt tokens in both servers: `instructions` as a system message,
// input messages with their text parts, function_call items as the tool calls of an assistant
// message (merged into the assistant message before them), function_call_output items as tool
// messages, reasoning items as reasoning_content. There is no server-side conversation state:
// `previous_response_id` is refused with a request for the full input. Tool types the server
// cannot run (web_search, file_search, ...) are left out of the prompt, with a log line.
#include "server/api.h"
#include "server/api_json.h"
#include "util/log.h"

namespace kvstash::server {

using namespace api_json;

namespace {

// A message's text parts as chat text parts (input_text, output_text; a string content is one).
json text_parts(const json& item, const std::string& where) {
  const json* c = field(item, "content");
  json parts = json::array();
  if (!c) return parts;
  if (c->is_string()) {
    parts.push_back({{"type", "text"}, {"text", *c}});
    return parts;
  }
  if (!c->is_array()) fail(where + ".content must be a string or an array of content parts");
  for (size_t k = 0; k < c->size(); ++k) {
    const std::string pw = at(where + ".content", k);
    const json& part = object_at((*c)[k], pw);
    const std::string type = string_at(part, "type", pw);
    if (type == "input_text" || type == "output_text") {
      parts.push_back({{"type", "text"}, {"text", string_at(part, "text", pw)}});
    } else if (type == "refusal") {
      parts.push_back({{"type", "text"}, {"text", string_at(part, "refusal", pw)}});
    } else if (type == "input_image" || type == "input_file" || type == "input_audio") {
      fail(pw + ": " + type + " is not supported (this server runs text models only)");
    } else {
      fail(pw + ".type '" + type + "' is not supported (input_text, output_text, refusal)");
    }
  }
  return parts;
}

// The assistant message that consecutive assistant items (text, function calls, reasoning) add
// to, as llama-server merges them; a new one after any other message.
json& assistant(json& messages) {
  if (messages.empty() || messages.back().value("role", "") != "assistant") {
    messages.push_back({{"role", "assistant"}});
  }
  return messages.back();
}

void add_item(const json& item, size_t i, json& messages) {
  const std::string where = at("input", i);
  object_at(item, where);
  const json* type_field = field(item, "type");
  const std::string type = type_field && type_field->is_string() ? type_field->get<std::string>()
                                                                 : std::string("message");
  if (type == "message") {
    const std::string role = string_at(item, "role", where);
    if (role != "user" && role != "system" && role != "developer" && role != "assistant") {
      fail(where + ".role '" + role + "' is not one of user, system, developer, assistant");
    }
    json parts = text_parts(item, where);
    if (role == "assistant") {
      json& a = assistant(messages);
      if (!a.contains("content")) a["content"] = json::array();
      for (auto& p : parts) a["content"].push_back(std::move(p));
    } else {
      messages.push_back({{"role", role}, {"content", std::move(parts)}});
    }
  } else if (type == "function_call") {
    json& a = assistant(messages);
    a["tool_calls"].push_back({{"id", string_at(item, "call_id", where)},
                               {"type", "function"},
                               {"function",
                                {{"name", string_at(item, "name", where)},
                                 {"arguments", string_at(item, "arguments", where)}}}});
  } else if (type == "custom_tool_call") {
    // A call of a free-form tool (its input is text, not JSON): a tool call whose arguments
    // carry the text.
    json& a = assistant(messages);
    a["tool_calls"].push_back(
        {{"id", string_at(item, "call_id", where)},
         {"type", "function"},
         {"function",
          {{"name", string_at(item, "name", where)},
           {"arguments", json{{"input", string_at(item, "input", where)}}.dump()}}}});
  } else if (type == "function_call_output" || type == "custom_tool_call_output") {
    const json* out = field(item, "output");
    std::string text;
    if (out && out->is_string()) {
      text = out->get<std::string>();
    } else if (out && out->is_array()) {
      for (const auto& p : text_parts({{"content", *out}}, where + ".output")) text += p["text"];
    } else {
      fail(where + ".output must be a string or an array of content parts");
    }
    messages.push_back(
        {{"role", "tool"}, {"tool_call_id", string_at(item, "call_id", where)}, {"content", text}});
  } else if (type == "reasoning") {
    // Reasoning the client kept: its text, if any (encrypted_content is another server's).
    std::string text;
    for (const char* key : {"content", "summary"}) {
      const json* parts = field(item, key);
      if (!parts || !parts->is_array() || !text.empty()) continue;
      for (const auto& p : *parts) {
        if (p.is_object() && p.contains("text") && p["text"].is_string()) text += p["text"];
      }
    }
    if (!text.empty()) {
      json& a = assistant(messages);
      if (!a.contains("content")) a["content"] = json::array();
      a["reasoning_content"] = text;
    }
  } else {
    fail(where + ".type '" + type +
         "' is not supported (message, function_call, function_call_output, custom_tool_call, "
         "custom_tool_call_output, reasoning)");
  }
}

json tools_of(const json& tools) {
  if (!tools.is_array()) fail("'tools' must be an array");
  json out = json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const json& t = object_at(tools[i], at("tools", i));
    const std::string type = string_at(t, "type", at("tools", i));
    if (type != "function") {
      log::info("responses: tool type '" + type + "' left out of the prompt (not run here)");
      continue;
    }
    json fn = json::object();
    fn["name"] = string_at(t, "name", at("tools", i));
    if (const json* d = field(t, "description")) fn["description"] = *d;
    if (const json* p = field(t, "parameters")) fn["parameters"] = *p;
    if (const json* s = field(t, "strict")) fn["strict"] = *s;
    out.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
  return out;
}

json tool_choice_of(const json& tc) {
  if (tc.is_string()) return tc;
  object_at(tc, "'tool_choice'");
  const std::string type = string_at(tc, "type", "tool_choice");
  if (type != "function") fail("'tool_choice.type' must be \"function\"; got '" + type + "'");
  return {{"type", "function"}, {"function", {{"name", string_at(tc, "name", "tool_choice")}}}};
}

}  // namespace

json responses_to_chat(const json& body) {
  if (field(body, "previous_response_id")) {
    fail(
        "'previous_response_id' is not supported: this server keeps no conversation state; "
        "send the whole conversation in 'input' (with 'store': false)");
  }
  json messages = json::array();
  if (const json* ins = field(body, "instructions")) {
    if (!ins->is_string()) fail("'instructions' must be a string");
    messages.push_back({{"role", "system"}, {"content", *ins}});
  }
  const json* input = field(body, "input");
  if (!input) fail("'input' is required");
  if (input->is_string()) {
    messages.push_back({{"role", "user"}, {"content", *input}});
  } else if (input->is_array() && !input->empty()) {
    for (size_t i = 0; i < input->size(); ++i) add_item((*input)[i], i, messages);
  } else {
    fail("'input' must be a string or a non-empty array of items");
  }
  json out = json::object();
  out["messages"] = std::move(messages);
  if (const json* tools = field(body, "tools")) {
    json t = tools_of(*tools);
    if (!t.empty()) out["tools"] = std::move(t);
  }
  if (const json* tc = field(body, "tool_choice")) out["tool_choice"] = tool_choice_of(*tc);
  if (const json* mo = field(body, "max_output_tokens")) {
    if (!mo->is_number_integer() || mo->get<long long>() < 1) {
      fail("'max_output_tokens' must be an integer of at least 1");
    }
    out["max_tokens"] = *mo;
  }
  if (const json* r = field(body, "reasoning")) {
    object_at(*r, "'reasoning'");
    if (const json* e = field(*r, "effort")) out["reasoning_effort"] = *e;
  }
  if (const json* text = field(body, "text"); text && text->is_object()) {
    if (const json* f = field(*text, "format"); f && f->is_object()) {
      if (f->value("type", "") == "json_schema") {
        out["response_format"] = {
            {"type", "json_schema"},
            {"json_schema", {{"schema", f->value("schema", json::object())}}}};
      } else if (f->value("type", "") == "json_object") {
        out["response_format"] = {{"type", "json_object"}};
      }
    }
  }
  for (const char* k :
       {"temperature", "top_p", "top_k", "min_p", "seed", "stream", "parallel_tool_calls",
        "cache_salt", "prefix_cache", "cache_prompt", "logit_bias", "reasoning_format",
        "return_progress", "chat_template_kwargs"}) {
    if (const json* v = field(body, k)) out[k] = *v;
  }
  return out;
}

json responses_with_reply(const json& body, const engine::ChatMessageOut& reply) {
  json next = body;
  const json* input = field(next, "input");
  if (!input) fail("'input' is required");
  if (input->is_string()) {
    next["input"] = json::array({{{"role", "user"}, {"content", *input}}});
  }
  json& items = next["input"];
  if (!reply.reasoning_content.empty()) {
    items.push_back({{"type", "reasoning"},
                     {"summary", json::array()},
                     {"content", json::array({{{"type", "reasoning_text"},
                                               {"text", reply.reasoning_content}}})}});
  }
  if (!reply.content.empty()) {
    items.push_back(
        {{"type", "message"},
         {"role", "assistant"},
         {"content", json::array({{{"type", "output_text"}, {"text", reply.content}}})}});
  }
  for (const auto& c : reply.tool_calls) {
    items.push_back({{"type", "function_call"},
                     {"call_id", c.id},
                     {"name", c.name},
                     {"arguments", c.arguments}});
  }
  return next;
}

}  // namespace kvstash::server
