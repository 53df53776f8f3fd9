// OpenAI chat completions, OpenAI completions and llama.cpp /completion replies.
#include "server/reply.h"

namespace kvstash::server {

using nlohmann::json;

namespace {

const char* finish_name(StopReason r) {
  switch (r) {
    case StopReason::kLength:
      return "length";
    case StopReason::kToolCalls:
      return "tool_calls";
    case StopReason::kEndTurn:
    case StopReason::kStopSequence:
      break;
  }
  return "stop";
}

json usage(const ReplyEnd& d) {
  return {{"prompt_tokens", d.prompt_tokens},
          {"completion_tokens", d.completion_tokens},
          {"total_tokens", d.prompt_tokens + d.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", d.cached_tokens}}}};
}

// llama-server's timings, with where the cached tokens came from.
json timings(const ReplyEnd& d) {
  return {{"cache_n", d.cached_tokens},     {"prompt_n", d.prompt_tokens - d.cached_tokens},
          {"prompt_ms", d.prompt_ms},       {"restore_ms", d.restore_ms},
          {"cache_source", d.cache_source}, {"predicted_n", d.completion_tokens},
          {"predicted_ms", d.generation_ms}};
}

json top_list(const json& e, bool with_ids) {
  json top = json::array();
  for (const auto& t : e["top"]) {
    json x = {{"token", t["token"]}, {"logprob", t["logprob"]}};
    if (with_ids) x = {{"id", t["id"]}, {"token", t["token"]}, {"logprob", t["logprob"]}};
    top.push_back(std::move(x));
  }
  return top;
}

// Log probabilities in each endpoint's shape.
json logprobs_json(Api api, const json& entries) {
  if (api == Api::kChat) {
    json content = json::array();
    for (const auto& e : entries) {
      content.push_back(
          {{"token", e["token"]}, {"logprob", e["logprob"]}, {"top_logprobs", top_list(e, false)}});
    }
    return {{"content", content}};
  }
  if (api == Api::kCompletions) {
    json tokens = json::array(), lps = json::array(), tops = json::array();
    for (const auto& e : entries) {
      tokens.push_back(e["token"]);
      lps.push_back(e["logprob"]);
      json top = json::object();
      for (const auto& t : e["top"]) top[t["token"].get<std::string>()] = t["logprob"];
      tops.push_back(top);
    }
    return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}};
  }
  json out = json::array();  // llama.cpp's completion_probabilities
  for (const auto& e : entries) {
    out.push_back({{"id", e["id"]},
                   {"token", e["token"]},
                   {"logprob", e["logprob"]},
                   {"top_logprobs", top_list(e, true)}});
  }
  return out;
}

// OpenAI chat completions and completions: "data: {...}" chunks, then "data: [DONE]".
class OpenAiEncoder : public ReplyEncoder {
 public:
  explicit OpenAiEncoder(const ReplyContext& c) : ReplyEncoder(c) {}

  std::string begin() override {
    if (!chat()) return "";
    return sse(chunk({{"role", "assistant"}, {"content", ""}}));
  }

  std::string event(const ReplyEvent& e) override {
    using K = ReplyEvent::Kind;
    switch (e.kind) {
      case K::kProgress: {
        json c = envelope(json::array(), false);
        c["prompt_progress"] = e.data;
        return sse(c);
      }
      case K::kLogprob:
        return sse(chunk(chat() ? json::object() : json(""),
                         logprobs_json(ctx_.api, json::array({e.data}))));
      case K::kText:
        return sse(chunk(chat() ? json{{"content", e.text}} : json(e.text)));
      case K::kReasoning:
        return sse(chunk({{"reasoning_content", e.text}}));
      case K::kToolBegin:
        return sse(
            chunk({{"tool_calls",
                    json::array({{{"index", e.tool},
                                  {"id", e.tool_id},
                                  {"type", "function"},
                                  {"function", {{"name", e.tool_name}, {"arguments", ""}}}}})}}));
      case K::kToolArgs:
        return sse(chunk({{"tool_calls", json::array({{{"index", e.tool},
                                                       {"function", {{"arguments", e.text}}}}})}}));
    }
    return "";
  }

  std::string end(const ReplyEnd& d, const ReplyMessage&) override {
    json choice =
        chat() ? json{{"index", 0}, {"delta", json::object()}} : json{{"index", 0}, {"text", ""}};
    choice["finish_reason"] = finish_name(d.reason);
    json c = envelope(json::array({choice}), false);
    c["usage"] = usage(d);
    c["timings"] = timings(d);
    return sse(c) + "data: [DONE]\n\n";
  }

  json whole(const ReplyEnd& d, const ReplyMessage& m) override {
    json choice = {{"index", 0}};
    if (chat()) {
      json msg = {{"role", "assistant"}};
      msg["content"] = m.content.empty() && !m.tool_calls.empty() ? json(nullptr) : json(m.content);
      if (!m.reasoning.empty()) msg["reasoning_content"] = m.reasoning;
      if (!m.tool_calls.empty()) {
        json calls = json::array();
        for (const auto& c : m.tool_calls) {
          calls.push_back({{"id", c.id},
                           {"type", "function"},
                           {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
        }
        msg["tool_calls"] = calls;
      }
      choice["message"] = msg;
    } else {
      choice["text"] = m.content;
    }
    choice["finish_reason"] = finish_name(d.reason);
    choice["logprobs"] = m.logprobs.empty() ? json(nullptr) : logprobs_json(ctx_.api, m.logprobs);
    json j = envelope(json::array({choice}), true);
    j["usage"] = usage(d);
    j["timings"] = timings(d);
    return j;
  }

 private:
  bool chat() const { return ctx_.api == Api::kChat; }
  json envelope(json choices, bool whole) const {
    return {{"id", (chat() ? "chatcmpl-" : "cmpl-") + ctx_.id},
            {"object",
             chat() ? (whole ? "chat.completion" : "chat.completion.chunk") : "text_completion"},
            {"created", ctx_.created},
            {"model", ctx_.model_id},
            {"choices", std::move(choices)}};
  }
  json chunk(const json& delta_or_text, const json& logprobs = nullptr) const {
    json choice = chat() ? json{{"index", 0}, {"delta", delta_or_text}}
                         : json{{"index", 0}, {"text", delta_or_text}};
    choice["finish_reason"] = nullptr;
    if (!logprobs.is_null()) choice["logprobs"] = logprobs;
    return envelope(json::array({choice}), false);
  }
};

// llama.cpp's /completion: {"content": ..., "stop": false} pieces, then the final object.
class LlamaCompletionEncoder : public ReplyEncoder {
 public:
  explicit LlamaCompletionEncoder(const ReplyContext& c) : ReplyEncoder(c) {}

  std::string event(const ReplyEvent& e) override {
    json c = {{"content", e.kind == ReplyEvent::Kind::kText ? e.text : ""}, {"stop", false}};
    if (e.kind == ReplyEvent::Kind::kProgress) c["prompt_progress"] = e.data;
    if (e.kind == ReplyEvent::Kind::kLogprob) {
      c["completion_probabilities"] = logprobs_json(ctx_.api, json::array({e.data}));
    }
    return sse(c);
  }
  std::string end(const ReplyEnd& d, const ReplyMessage&) override { return sse(final_object(d)); }
  json whole(const ReplyEnd& d, const ReplyMessage& m) override {
    json j = final_object(d);
    j["content"] = m.content;
    if (!m.logprobs.empty()) j["completion_probabilities"] = logprobs_json(ctx_.api, m.logprobs);
    return j;
  }

 private:
  static json final_object(const ReplyEnd& d) {
    const char* stop_type = d.reason == StopReason::kLength         ? "limit"
                            : d.reason == StopReason::kStopSequence ? "word"
                                                                    : "eos";
    json j = {{"content", ""},
              {"stop", true},
              {"tokens_cached", d.cached_tokens},
              {"tokens_evaluated", d.prompt_tokens},
              {"tokens_predicted", d.completion_tokens},
              {"stop_type", stop_type},
              {"timings", timings(d)}};
    if (d.reason == StopReason::kStopSequence) j["stopping_word"] = d.stop_sequence;
    return j;
  }
};

}  // namespace

std::unique_ptr<ReplyEncoder> make_openai_encoder(const ReplyContext& c) {
  if (c.api == Api::kLlamaCompletion) return std::make_unique<LlamaCompletionEncoder>(c);
  return std::make_unique<OpenAiEncoder>(c);
}

}  // namespace kvstash::server
