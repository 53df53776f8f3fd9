// One reply, whatever API asked for it: the internal event stream, and one encoder per API
// dialect that writes it in that dialect's wire format.
//
// Flow: the slot thread hands out text pieces (Job::on_text) and log probabilities; the HTTP
// thread that answers the request feeds them to a ReplyAssembler, which turns them into
// ReplyEvents (chat APIs: the chat format's parser splits content, reasoning and tool calls);
// the dialect's ReplyEncoder writes each event as SSE bytes while streaming, or builds the whole
// body at the end. Assemblers and encoders are plain state machines: one per request, used by
// the one thread that answers it, no I/O. A new API is one encoder file plus its parser
// (server/api.h).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/chat.h"
#include "server/api.h"
#include "server/slot_pool.h"

namespace kvstash::server {

struct ReplyEvent {
  enum class Kind {
    kText,       // a piece of the reply's text (chat: of its content)
    kReasoning,  // a piece of its reasoning
    kToolBegin,  // a tool call begins: `tool`, `tool_id`, `tool_name`
    kToolArgs,   // a piece of tool call `tool`'s arguments (JSON text)
    kLogprob,    // `data`: {id, token, logprob, top: [{id, token, logprob}]}
    kProgress,   // `data`: {total, cache, processed, time_ms} (prompt processing)
  };
  Kind kind = Kind::kText;
  std::string text;
  int tool = -1;
  std::string tool_id, tool_name;
  nlohmann::json data;
};

enum class StopReason {
  kEndTurn,       // the model ended its turn
  kStopSequence,  // a stop string the client asked for (ReplyEnd::stop_sequence)
  kLength,        // the token limit, the server's cap or the context's end
  kToolCalls,     // the reply is tool calls
};

// The whole reply as parsed: what non-streamed replies carry, and streams' final events.
struct ReplyMessage {
  std::string content;  // chat: the content; completions: the text
  std::string reasoning;
  std::vector<engine::ToolCall> tool_calls;
  nlohmann::json logprobs = nlohmann::json::array();  // kLogprob events' data, in order
};

// How the reply ended, with the request's usage and timings.
struct ReplyEnd {
  StopReason reason = StopReason::kEndTurn;
  std::string stop_sequence;
  uint32_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  double prompt_ms = 0, restore_ms = 0, generation_ms = 0;
  std::string cache_source;
};
ReplyEnd reply_end(const Job::Result& r, const std::vector<std::string>& stops,
                   const ReplyMessage& m);

class ReplyAssembler {
 public:
  // `parser`: the chat format's (chat APIs), or null (completions: the text as it comes).
  explicit ReplyAssembler(std::shared_ptr<const engine::ChatParser> parser);
  // Streaming: the events a text piece adds (more may follow).
  std::vector<ReplyEvent> text(const std::string& piece);
  // The end: the events the last parse adds (a tool call's last arguments, say). After it,
  // message() is the whole reply.
  std::vector<ReplyEvent> finish();
  // Not streaming: collect a piece; finish() parses it all at once.
  void collect(const std::string& piece) { pending_ += piece; }
  ReplyEvent logprob(nlohmann::json entry);
  const ReplyMessage& message() const { return msg_; }

 private:
  std::vector<ReplyEvent> parse(const std::string& piece, bool partial);
  std::optional<engine::ChatParser::Reply> chat_;
  std::string pending_;
  ReplyMessage msg_;
};

struct ReplyContext {
  Api api = Api::kChat;
  std::string id;  // unique per request; encoders add their dialect's prefix
  int64_t created = 0;
  std::string model_id;
  uint32_t prompt_tokens = 0;  // known before the reply starts (the cache's share is not)
};

class ReplyEncoder {
 public:
  virtual ~ReplyEncoder() = default;
  // Streaming: the bytes sent as soon as the request is accepted, before any token.
  virtual std::string begin() { return ""; }
  virtual std::string event(const ReplyEvent& e) = 0;
  // The stream's last bytes.
  virtual std::string end(const ReplyEnd& e, const ReplyMessage& m) = 0;
  // A failure after the stream began (its HTTP status is sent already).
  virtual std::string error(const ApiError& e);
  // Sent while nothing else is (a long prefill, a wait for a slot), so clients keep waiting.
  virtual std::string keepalive() { return ": keep-alive\n\n"; }
  // Not streaming: the whole body.
  virtual nlohmann::json whole(const ReplyEnd& e, const ReplyMessage& m) = 0;

 protected:
  explicit ReplyEncoder(ReplyContext c) : ctx_(std::move(c)) {}
  ReplyContext ctx_;
};

std::unique_ptr<ReplyEncoder> make_encoder(const ReplyContext& c);

// SSE framing: "data: JSON\n\n", and "event: NAME\ndata: JSON\n\n" for named events.
std::string sse(const nlohmann::json& data);
std::string sse(const std::string& event, const nlohmann::json& data);
// JSON text that survives invalid UTF-8 in generated text (replaced, not thrown).
std::string dump_json(const nlohmann::json& j);

// The encoders of each dialect (reply_openai.cpp, reply_anthropic.cpp, reply_responses.cpp).
std::unique_ptr<ReplyEncoder> make_openai_encoder(const ReplyContext& c);
std::unique_ptr<ReplyEncoder> make_anthropic_encoder(const ReplyContext& c);
std::unique_ptr<ReplyEncoder> make_responses_encoder(const ReplyContext& c);

}  // namespace kvstash::server
