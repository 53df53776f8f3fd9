// OpenAI Responses replies: a response whose output is a list of items (reasoning, a message
// with one output_text part, function calls). Streamed as response.created, response.in_progress,
// then per item output_item.added, its parts' and text's added / delta / done events,
// output_item.done, and at the end response.completed (or response.incomplete when the token
// limit cut it). Every event carries a sequence_number; usage carries
// input_tokens_details.cached_tokens.
#include "server/reply.h"

namespace kvstash::server {

using nlohmann::json;

namespace {

class ResponsesEncoder : public ReplyEncoder {
 public:
  explicit ResponsesEncoder(const ReplyContext& c) : ReplyEncoder(c) {}

  std::string begin() override {
    const json r = response("in_progress", json::array(), nullptr);
    std::string out = emit("response.created", {{"response", r}});
    return out + emit("response.in_progress", {{"response", r}});
  }

  std::string event(const ReplyEvent& e) override {
    using K = ReplyEvent::Kind;
    switch (e.kind) {
      case K::kReasoning: {
        std::string out =
            open(Item::kReasoning, {{"type", "reasoning"}, {"summary", json::array()}});
        cur().text += e.text;
        return out + emit("response.reasoning_text.delta", {{"item_id", cur().id},
                                                            {"output_index", index()},
                                                            {"content_index", 0},
                                                            {"delta", e.text}});
      }
      case K::kText: {
        std::string out = open(Item::kMessage, {{"type", "message"},
                                                {"status", "in_progress"},
                                                {"role", "assistant"},
                                                {"content", json::array()}});
        cur().text += e.text;
        return out + emit("response.output_text.delta", {{"item_id", cur().id},
                                                         {"output_index", index()},
                                                         {"content_index", 0},
                                                         {"delta", e.text},
                                                         {"logprobs", json::array()}});
      }
      case K::kToolBegin: {
        std::string out = close();
        items_.push_back({Item::kCall, "fc_" + e.tool_id, e.tool_id, e.tool_name, "", true});
        return out + emit("response.output_item.added",
                          {{"output_index", index()}, {"item", item_json(cur(), "in_progress")}});
      }
      case K::kToolArgs:
        if (items_.empty() || !cur().open || cur().kind != Item::kCall) return "";
        cur().text += e.text;
        return emit("response.function_call_arguments.delta",
                    {{"item_id", cur().id}, {"output_index", index()}, {"delta", e.text}});
      case K::kLogprob:
      case K::kProgress:
        break;
    }
    return "";
  }

  std::string end(const ReplyEnd& d, const ReplyMessage&) override {
    std::string out = close();
    json output = json::array();
    for (const auto& it : items_) output.push_back(item_json(it, "completed"));
    const bool cut = d.reason == StopReason::kLength;
    const json r = response(cut ? "incomplete" : "completed", output, usage(d));
    return out + emit(cut ? "response.incomplete" : "response.completed", {{"response", r}});
  }

  std::string error(const ApiError& e) override {
    json r = response("failed", json::array(), nullptr);
    r["error"] = {{"code", e.status >= 500 ? "server_error" : "invalid_request"},
                  {"message", e.message}};
    return emit("response.failed", {{"response", r}});
  }

  json whole(const ReplyEnd& d, const ReplyMessage& m) override {
    if (!m.reasoning.empty()) {
      items_.push_back({Item::kReasoning, "rs_" + ctx_.id, "", "", m.reasoning, false});
    }
    if (!m.content.empty()) {
      items_.push_back({Item::kMessage, "msg_" + ctx_.id, "", "", m.content, false});
    }
    for (const auto& c : m.tool_calls) {
      items_.push_back({Item::kCall, "fc_" + c.id, c.id, c.name, c.arguments, false});
    }
    json output = json::array();
    for (const auto& it : items_) output.push_back(item_json(it, "completed"));
    return response(d.reason == StopReason::kLength ? "incomplete" : "completed", output, usage(d));
  }

 private:
  struct Item {
    enum Kind { kReasoning, kMessage, kCall } kind;
    std::string id, call_id, name, text;
    bool open = false;
  };

  Item& cur() { return items_.back(); }
  int index() const { return static_cast<int>(items_.size()) - 1; }

  std::string emit(const std::string& type, json data) {
    json e = {{"type", type}, {"sequence_number", seq_++}};
    e.update(data);
    return sse(type, e);
  }

  static json usage(const ReplyEnd& d) {
    return {{"input_tokens", d.prompt_tokens},
            {"input_tokens_details", {{"cached_tokens", d.cached_tokens}}},
            {"output_tokens", d.completion_tokens},
            {"output_tokens_details", {{"reasoning_tokens", 0}}},
            {"total_tokens", d.prompt_tokens + d.completion_tokens}};
  }

  json response(const std::string& status, json output, json usage) const {
    json r = {{"id", "resp_" + ctx_.id},       {"object", "response"},
              {"created_at", ctx_.created},    {"status", status},
              {"model", ctx_.model_id},        {"output", std::move(output)},
              {"parallel_tool_calls", true},   {"tool_choice", "auto"},
              {"tools", json::array()},        {"error", nullptr},
              {"incomplete_details", nullptr}, {"usage", std::move(usage)}};
    if (status == "incomplete") r["incomplete_details"] = {{"reason", "max_output_tokens"}};
    return r;
  }

  static json text_part(const Item& it) {
    return {{"type", "output_text"},
            {"text", it.text},
            {"annotations", json::array()},
            {"logprobs", json::array()}};
  }

  static json item_json(const Item& it, const std::string& status) {
    switch (it.kind) {
      case Item::kReasoning:
        return {{"id", it.id},
                {"type", "reasoning"},
                {"summary", json::array()},
                {"content", json::array({{{"type", "reasoning_text"}, {"text", it.text}}})},
                {"status", status}};
      case Item::kMessage:
        return {{"id", it.id},
                {"type", "message"},
                {"status", status},
                {"role", "assistant"},
                {"content", status == "completed" ? json::array({text_part(it)}) : json::array()}};
      case Item::kCall:
        break;
    }
    return {{"id", it.id},           {"type", "function_call"}, {"status", status},
            {"call_id", it.call_id}, {"name", it.name},         {"arguments", it.text}};
  }

  // Opens an item of `kind` unless the last one is an open item of that kind.
  std::string open(Item::Kind kind, const json& shell) {
    if (!items_.empty() && cur().open && cur().kind == kind) return "";
    std::string out = close();
    const char* prefix = kind == Item::kReasoning ? "rs_" : "msg_";
    items_.push_back(
        {kind, prefix + ctx_.id + "_" + std::to_string(items_.size()), "", "", "", true});
    json item = shell;
    item["id"] = cur().id;
    out += emit("response.output_item.added", {{"output_index", index()}, {"item", item}});
    if (kind == Item::kMessage) {
      json part = text_part(cur());
      out += emit(
          "response.content_part.added",
          {{"item_id", cur().id}, {"output_index", index()}, {"content_index", 0}, {"part", part}});
    }
    return out;
  }

  // Ends the open item: its done events.
  std::string close() {
    if (items_.empty() || !cur().open) return "";
    Item& it = cur();
    it.open = false;
    std::string out;
    const json ids = {{"item_id", it.id}, {"output_index", index()}};
    switch (it.kind) {
      case Item::kReasoning: {
        json d = ids;
        d["content_index"] = 0;
        d["text"] = it.text;
        out += emit("response.reasoning_text.done", d);
        break;
      }
      case Item::kMessage: {
        json d = ids;
        d["content_index"] = 0;
        d["text"] = it.text;
        d["logprobs"] = json::array();
        out += emit("response.output_text.done", d);
        json p = ids;
        p["content_index"] = 0;
        p["part"] = text_part(it);
        out += emit("response.content_part.done", p);
        break;
      }
      case Item::kCall: {
        json d = ids;
        d["arguments"] = it.text;
        d["name"] = it.name;
        out += emit("response.function_call_arguments.done", d);
        break;
      }
    }
    return out + emit("response.output_item.done",
                      {{"output_index", index()}, {"item", item_json(it, "completed")}});
  }

  std::vector<Item> items_;
  int64_t seq_ = 0;
};

}  // namespace

std::unique_ptr<ReplyEncoder> make_responses_encoder(const ReplyContext& c) {
  return std::make_unique<ResponsesEncoder>(c);
}

}  // namespace kvstash::server
