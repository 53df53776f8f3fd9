// Anthropic Messages replies: a message with content blocks (thinking, text, tool_use), streamed
// as message_start, content_block_start / _delta / _stop per block, message_delta (stop reason,
// usage), message_stop; `ping` keeps a waiting stream alive. Usage as Anthropic counts it:
// input_tokens are the prompt tokens not read from the cache, cache_read_input_tokens the rest.
#include "server/reply.h"

namespace kvstash::server {

using nlohmann::json;

namespace {

const char* stop_name(StopReason r) {
  switch (r) {
    case StopReason::kLength:
      return "max_tokens";
    case StopReason::kToolCalls:
      return "tool_use";
    case StopReason::kStopSequence:
      return "stop_sequence";
    case StopReason::kEndTurn:
      break;
  }
  return "end_turn";
}

json usage(const ReplyEnd& d) {
  return {{"input_tokens", d.prompt_tokens - d.cached_tokens},
          {"cache_creation_input_tokens", 0},
          {"cache_read_input_tokens", d.cached_tokens},
          {"output_tokens", d.completion_tokens}};
}

// A tool call's input: its arguments as a JSON object ({} where the model wrote something else).
json tool_input(const std::string& arguments) {
  json j = json::parse(arguments, nullptr, false);
  return j.is_object() ? j : json::object();
}

class AnthropicEncoder : public ReplyEncoder {
 public:
  explicit AnthropicEncoder(const ReplyContext& c) : ReplyEncoder(c) {}

  std::string begin() override {
    json msg = message_shell();
    msg["usage"] = {{"input_tokens", ctx_.prompt_tokens},
                    {"cache_creation_input_tokens", 0},
                    {"cache_read_input_tokens", 0},
                    {"output_tokens", 0}};
    return sse("message_start", {{"type", "message_start"}, {"message", msg}});
  }

  std::string event(const ReplyEvent& e) override {
    using K = ReplyEvent::Kind;
    switch (e.kind) {
      case K::kText: {
        std::string out = open(Block::kText, {{"type", "text"}, {"text", ""}});
        return out + delta({{"type", "text_delta"}, {"text", e.text}});
      }
      case K::kReasoning: {
        std::string out =
            open(Block::kThinking, {{"type", "thinking"}, {"thinking", ""}, {"signature", ""}});
        return out + delta({{"type", "thinking_delta"}, {"thinking", e.text}});
      }
      case K::kToolBegin:
        tool_ = e.tool;
        return open(Block::kTool, {{"type", "tool_use"},
                                   {"id", e.tool_id},
                                   {"name", e.tool_name},
                                   {"input", json::object()}});
      case K::kToolArgs:
        if (open_ != Block::kTool || e.tool != tool_) return "";
        return delta({{"type", "input_json_delta"}, {"partial_json", e.text}});
      case K::kLogprob:
      case K::kProgress:
        break;
    }
    return "";
  }

  std::string end(const ReplyEnd& d, const ReplyMessage&) override {
    json delta = {
        {"stop_reason", stop_name(d.reason)},
        {"stop_sequence", d.stop_sequence.empty() ? json(nullptr) : json(d.stop_sequence)}};
    std::string out = close();
    out += sse("message_delta", {{"type", "message_delta"}, {"delta", delta}, {"usage", usage(d)}});
    return out + sse("message_stop", {{"type", "message_stop"}});
  }

  std::string error(const ApiError& e) override {
    return sse("error", error_json(Api::kMessages, e));
  }

  std::string keepalive() override { return sse("ping", {{"type", "ping"}}); }

  json whole(const ReplyEnd& d, const ReplyMessage& m) override {
    json msg = message_shell();
    json& content = msg["content"];
    if (!m.reasoning.empty()) {
      content.push_back({{"type", "thinking"}, {"thinking", m.reasoning}, {"signature", ""}});
    }
    if (!m.content.empty()) content.push_back({{"type", "text"}, {"text", m.content}});
    for (const auto& c : m.tool_calls) {
      content.push_back({{"type", "tool_use"},
                         {"id", c.id},
                         {"name", c.name},
                         {"input", tool_input(c.arguments)}});
    }
    msg["stop_reason"] = stop_name(d.reason);
    msg["stop_sequence"] = d.stop_sequence.empty() ? json(nullptr) : json(d.stop_sequence);
    msg["usage"] = usage(d);
    return msg;
  }

 private:
  enum class Block { kNone, kText, kThinking, kTool };

  json message_shell() const {
    return {{"id", "msg_" + ctx_.id},  {"type", "message"},        {"role", "assistant"},
            {"model", ctx_.model_id},  {"content", json::array()}, {"stop_reason", nullptr},
            {"stop_sequence", nullptr}};
  }
  // Starts a block of `kind` unless one is open (a tool block is opened by its kToolBegin).
  std::string open(Block kind, json block) {
    if (open_ == kind && kind != Block::kTool) return "";
    std::string out = close();
    open_ = kind;
    out += sse(
        "content_block_start",
        {{"type", "content_block_start"}, {"index", index_}, {"content_block", std::move(block)}});
    return out;
  }
  std::string delta(json d) const {
    return sse("content_block_delta",
               {{"type", "content_block_delta"}, {"index", index_}, {"delta", std::move(d)}});
  }
  std::string close() {
    if (open_ == Block::kNone) return "";
    std::string out =
        sse("content_block_stop", {{"type", "content_block_stop"}, {"index", index_}});
    open_ = Block::kNone;
    ++index_;
    return out;
  }

  Block open_ = Block::kNone;
  int index_ = 0;
  int tool_ = -1;
};

}  // namespace

std::unique_ptr<ReplyEncoder> make_anthropic_encoder(const ReplyContext& c) {
  return std::make_unique<AnthropicEncoder>(c);
}

}  // namespace kvstash::server
