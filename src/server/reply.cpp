#include "server/reply.h"

#include <algorithm>

namespace kvstash::server {

using nlohmann::json;

std::string dump_json(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string sse(const json& data) { return "data: " + dump_json(data) + "\n\n"; }

std::string sse(const std::string& event, const json& data) {
  return "event: " + event + "\n" + sse(data);
}

std::string ReplyEncoder::error(const ApiError& e) { return sse(error_json(ctx_.api, e)); }

ReplyEnd reply_end(const Job::Result& r, const std::vector<std::string>& stops,
                   const ReplyMessage& m) {
  ReplyEnd e;
  if (r.end == JobEnd::kLength) {
    e.reason = StopReason::kLength;
  } else if (!m.tool_calls.empty()) {
    e.reason = StopReason::kToolCalls;
  } else if (r.end == JobEnd::kStopString && r.stop_index >= 0 &&
             static_cast<size_t>(r.stop_index) < stops.size()) {
    // Only the client's own stop strings are a stop_sequence; the chat format's extra stops
    // (Job::stop after them) end a turn.
    e.reason = StopReason::kStopSequence;
    e.stop_sequence = stops[static_cast<size_t>(r.stop_index)];
  }
  e.prompt_tokens = r.prompt_tokens;
  e.cached_tokens = r.cached_tokens;
  e.completion_tokens = r.completion_tokens;
  e.prompt_ms = r.prompt_ms;
  e.restore_ms = r.restore_ms;
  e.generation_ms = r.generation_ms;
  e.cache_source = r.cache_source;
  return e;
}

ReplyAssembler::ReplyAssembler(std::shared_ptr<const engine::ChatParser> parser) {
  if (parser) chat_.emplace(std::move(parser));
}

std::vector<ReplyEvent> ReplyAssembler::parse(const std::string& piece, bool partial) {
  std::vector<ReplyEvent> out;
  if (!chat_) {
    msg_.content += piece;
    if (!piece.empty()) out.push_back({ReplyEvent::Kind::kText, piece, -1, "", "", nullptr});
    return out;
  }
  for (const auto& d : chat_->update(piece, partial)) {
    if (!d.reasoning_content.empty()) {
      out.push_back({ReplyEvent::Kind::kReasoning, d.reasoning_content, -1, "", "", nullptr});
    }
    if (!d.content.empty()) {
      out.push_back({ReplyEvent::Kind::kText, d.content, -1, "", "", nullptr});
    }
    if (d.tool_index < 0) continue;
    if (!d.tool.name.empty()) {
      out.push_back(
          {ReplyEvent::Kind::kToolBegin, "", d.tool_index, d.tool.id, d.tool.name, nullptr});
    }
    if (!d.tool.arguments.empty()) {
      out.push_back({ReplyEvent::Kind::kToolArgs, d.tool.arguments, d.tool_index, "", "", nullptr});
    }
  }
  const auto& m = chat_->message();
  msg_.content = m.content;
  msg_.reasoning = m.reasoning_content;
  msg_.tool_calls = m.tool_calls;
  return out;
}

std::vector<ReplyEvent> ReplyAssembler::text(const std::string& piece) {
  return parse(piece, true);
}

std::vector<ReplyEvent> ReplyAssembler::finish() {
  std::string rest;
  rest.swap(pending_);
  return parse(rest, false);
}

ReplyEvent ReplyAssembler::logprob(json entry) {
  msg_.logprobs.push_back(entry);
  return {ReplyEvent::Kind::kLogprob, "", -1, "", "", std::move(entry)};
}

std::unique_ptr<ReplyEncoder> make_encoder(const ReplyContext& c) {
  switch (c.api) {
    case Api::kMessages:
      return make_anthropic_encoder(c);
    case Api::kResponses:
      return make_responses_encoder(c);
    case Api::kChat:
    case Api::kCompletions:
    case Api::kLlamaCompletion:
      break;
  }
  return make_openai_encoder(c);
}

}  // namespace kvstash::server
