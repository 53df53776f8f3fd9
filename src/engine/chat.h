// Chat templates, tools and model output, through llama.cpp's common chat library.
//
// A chat request is rendered with the model's Jinja template (or an override), tools included,
// exactly as llama-server --jinja renders it: the same prompt tokens are what let two servers, or
// two turns of one agent, share a cached prefix. The same call returns what generation needs:
// the grammar (and lazy triggers) that constrains tool calls or a JSON schema, extra stop
// strings, and the parser that splits the model's output into content, reasoning and tool calls.
//
// llama.cpp's types stay inside this file's implementation: callers see plain strings and
// structs, and JSON travels as text (the common library wraps its own JSON library).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/model.h"

namespace kvstash::engine {

// The request cannot be rendered as asked (bad tools, unknown tool, bad schema, a template that
// raises). The message says what is wrong; the HTTP layer answers 400 with it.
struct ChatError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct ChatInput {
  std::string messages_json;         // a JSON array of OpenAI chat messages
  std::string tools_json;            // a JSON array of OpenAI tools, or empty
  std::string tool_choice = "auto";  // auto | none | required
  std::string tool_name;             // tool_choice naming one function: only it may be called
  std::optional<bool> parallel_tool_calls;
  std::string json_schema;  // response_format's schema (JSON), or empty
  std::string grammar;      // a GBNF grammar given by the client, or empty
  bool add_generation_prompt = true;
  std::string reasoning_format;  // none | auto | deepseek | deepseek-legacy; empty: auto
  std::optional<bool> enable_thinking;
  std::map<std::string, std::string> template_kwargs;  // name -> JSON value
};

// How sampling is constrained (llama.cpp grammar sampler); empty grammar: unconstrained.
struct GrammarSpec {
  std::string grammar;                        // GBNF
  bool lazy = false;                          // only once a trigger appears in the output
  std::vector<std::string> trigger_patterns;  // regular expressions over the output
  std::vector<Token> trigger_tokens;
  // Tokens the template put in the prompt after the last message ("<|im_start|>assistant\n"):
  // tool-call and output-format grammars start there, so they consume these first.
  std::vector<Token> prefill;
};

struct ToolCall {
  std::string id, name, arguments;  // arguments: JSON text as the model wrote it
};

struct ChatMessageOut {
  std::string content, reasoning_content;
  std::vector<ToolCall> tool_calls;
};

// One streamed change of the reply: a piece of content or reasoning, or of one tool call (its
// id and name come with its first piece, arguments as they grow).
struct ChatDelta {
  std::string content, reasoning_content;
  int tool_index = -1;
  ToolCall tool;
};

// The client went away while its request was being rendered (RenderBudget::cancelled).
struct ChatCancelled : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What the prefix renderings (ChatRender::prefix_ends) may cost one request. Each prefix is
// rendered once and remembered, so an agent's turn renders only its new messages; a long
// conversation new to the server renders every prefix, O(messages^2), which is bounded by time:
// past `deadline` the remaining prefixes are left for later requests (ChatRender::complete is
// false), each of which renders more until all are remembered. `cancelled` is asked between
// renderings; once it says so, render() throws ChatCancelled.
struct RenderBudget {
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  std::function<bool()> cancelled;
};

class ChatParser;

struct ChatRender {
  std::string prompt;
  // Where asked for: for each message i, the length of the rendering of messages [0, i] (no
  // generation prompt) when that rendering is a prefix of `prompt`; where it is not (templates
  // that render the last message differently, as Qwen3 closes a last assistant turn with a think
  // block) and a message follows, the length of the common prefix of two renderings of [0, i+1]
  // with placeholder contents for message i+1 (which ends after i+1's header), if that is a
  // prefix; else 0, as where the template refuses the prefix (e.g. no user message yet).
  std::vector<size_t> prefix_ends;
  // For each prefix: its memo key (for remember_tokens), and its tokens as an earlier request
  // verified them (count 0: not known yet).
  struct PrefixTokens {
    uint32_t count = 0;  // tokens of the prefix's rendering
    uint64_t hash = 0;   // XXH3 of those tokens (int32 each)
  };
  std::vector<uint64_t> prefix_keys;
  std::vector<PrefixTokens> prefix_tokens;
  std::vector<std::string> roles;  // of each message, as the template saw them
  // Every prefix was rendered (else the RenderBudget ran out): boundaries are a function of the
  // messages only when complete, and batch breaks, hence bit-exact reuse, depend on them.
  bool complete = true;
  GrammarSpec grammar;
  std::vector<std::string> stops;  // stop strings the format adds
  std::string format;              // the chat format's name (for logs and /props)
  std::shared_ptr<const ChatParser> parser;
};

class ChatTemplates {
 public:
  // `override_src`: Jinja source, or "chatml"; empty: the model's own template.
  ChatTemplates(const Model& model, const std::string& override_src = "");
  ~ChatTemplates();
  ChatTemplates(const ChatTemplates&) = delete;
  ChatTemplates& operator=(const ChatTemplates&) = delete;

  // Throws ChatError for anything the request got wrong. Prefix renderings are remembered (by a
  // hash of the messages and settings) and reused while they still match, so an agent's next
  // turn renders only its new messages. Thread-safe.
  ChatRender render(const ChatInput& in, bool with_prefixes, const RenderBudget& budget = {}) const;
  // Remembers the verified tokens of the prefix rendering `key` (ChatRender::prefix_keys), so a
  // later request checks a hash instead of tokenizing that prefix again.
  void remember_tokens(uint64_t key, ChatRender::PrefixTokens t) const;
  std::string source() const;
  std::map<std::string, bool> caps() const;

  struct Impl;  // defined in chat.cpp only

 private:
  std::unique_ptr<Impl> impl_;
};

// The GBNF grammar of a JSON schema (llama.cpp's json-schema-to-grammar). Throws ChatError.
std::string grammar_from_json_schema(const std::string& schema_json);

// Parses one reply as it grows: feed the generated text, get the deltas since the last call.
class ChatParser {
 public:
  ~ChatParser();
  // A fresh parsing state for one reply of this format.
  class Reply {
   public:
    explicit Reply(std::shared_ptr<const ChatParser> p);
    ~Reply();
    Reply(Reply&&) noexcept;
    // `partial`: more text may follow. The final call (partial = false) never throws: a reply
    // the format cannot parse becomes plain content.
    std::vector<ChatDelta> update(const std::string& text_added, bool partial);
    const ChatMessageOut& message() const { return msg_; }

   private:
    struct State;
    std::unique_ptr<State> st_;
    ChatMessageOut msg_;
  };

 private:
  friend class ChatTemplates;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  ChatParser();
};

}  // namespace kvstash::engine
