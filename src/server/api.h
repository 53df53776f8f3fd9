// Request bodies of every API dialect, parsed and validated into one internal request.
//
// Every check a client can fail is here, with a message that says what is wrong and where, so
// the HTTP layer only maps ApiError to a 4xx response in the dialect's error shape. Unknown
// fields are ignored (clients send many); known fields of the wrong type or out of range are
// errors. A chat request in any dialect becomes an OpenAI chat request first (Anthropic
// Messages: api_anthropic.cpp; OpenAI Responses: api_responses.cpp), so the same conversation
// renders to the same tokens and shares one cache entry whichever API sent it.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "cache/scope_policy.h"
#include "engine/chat.h"
#include "engine/sampler.h"

namespace kvstash::server {

struct ApiError {
  int status = 400;
  std::string message;
};

// The API dialects: each has a request parser here and a reply encoder (server/reply.h).
enum class Api {
  kChat,             // OpenAI /v1/chat/completions
  kCompletions,      // OpenAI /v1/completions
  kLlamaCompletion,  // llama.cpp /completion
  kMessages,         // Anthropic /v1/messages
  kResponses,        // OpenAI /v1/responses
};
const char* api_name(Api api);  // chat, completions, completion, messages, responses
bool is_chat(Api api);          // the prompt is a conversation rendered by the chat template

// What Claude Code's first system line, "x-anthropic-billing-header: cc_version=...;
// cc_entrypoint=...; cch=XXXXX;", becomes. Its cch stamp changes on every request in some
// versions, which would put a new token at the start of every prompt.
enum class BillingHeader {
  kKeep,       // as sent
  kNormalize,  // the stamp replaced by "fffff", as the pinned llama-server does (default)
  kDrop,       // the whole line removed (it carries no instruction for a local model)
};

// What one request may ask of the server (serve flags, shown in /props under "limits"). A request
// beyond one gets a clear 4xx before any work; none of them bounds what a client may legitimately
// send by much (Claude Code sends ~20 tools nested ~10 deep, agent conversations a few hundred
// messages).
struct Limits {
  size_t body_bytes = 64ull << 20;  // after any Content-Encoding, however the body is framed
  int json_depth = 128;             // nested arrays and objects
  int messages = 4096;              // messages of a conversation (every dialect)
  int tools = 1024;
  size_t grammar_bytes = 256 << 10;  // a client's GBNF grammar
  int prompt_tokens = 0;             // 0: the context per slot
  int queue = 256;                   // requests waiting for a slot; more get 503 + Retry-After
  double render_seconds = 10;        // message boundaries found after this are left out
};

// A grammar nests at most this deep (groups in parentheses): llama.cpp's parser recurses per level.
inline constexpr int kMaxGrammarDepth = 256;
// An object of a request has at most this many members (each is looked up among the others as
// it is parsed: more would make parsing quadratic).
inline constexpr size_t kMaxObjectKeys = 4096;
// Stop strings are matched against every generated piece: each is at most this long.
inline constexpr size_t kMaxStopBytes = 4096;

struct ApiOptions {
  int n_vocab = 0;
  BillingHeader billing = BillingHeader::kNormalize;
  Limits limits;
};

// The body as JSON, refusing nesting deeper than `max_depth` (nlohmann parses without recursion,
// but dump(), copies and comparisons recurse: a deep body would overflow the stack there) and
// objects of more than kMaxObjectKeys members. Throws std::invalid_argument with the reason.
nlohmann::ordered_json parse_json_body(const std::string& body, int max_depth);
// Throws std::invalid_argument when a GBNF grammar is longer than `max_bytes` or nests groups
// deeper than kMaxGrammarDepth.
void check_grammar_size(const std::string& gbnf, size_t max_bytes);

struct GenerationParams {
  int max_tokens = -1;  // -1: the server's --n-predict (default: until EOS or the context's end)
  engine::SamplingParams sampling;
  std::vector<std::string> stop;
  bool stream = false;
  bool return_progress = false;
  std::optional<cache::Scope> scope;  // per-request override of --cache-scope
  std::string cache_salt;             // the tenant's own cache key space ("" for none)
  bool logprobs = false;              // report log probabilities (top: sampling.n_probs)
  std::string json_schema;            // completions: constrain the text to this schema (JSON)
};

struct ParsedRequest {
  Api api = Api::kChat;
  engine::ChatInput chat;              // chat APIs: messages, tools, formats, as JSON text
  std::string prompt_text;             // completions with a text prompt
  std::vector<int32_t> prompt_tokens;  // completions with token ids
  GenerationParams gen;
  // The body's members that say which agent session it belongs to (server/session_key.h), as
  // sent, before a dialect's translation.
  nlohmann::ordered_json session_fields;
};

std::variant<ParsedRequest, ApiError> parse_request(Api api, const std::string& body,
                                                    const ApiOptions& opt);

// The JSON error body in the dialect's shape (Anthropic's for kMessages, else OpenAI's).
nlohmann::json error_json(Api api, const ApiError& e);

// The dialects' translations into an OpenAI chat request (throw api_json::Bad). Exposed for
// their tests.
nlohmann::ordered_json anthropic_to_chat(const nlohmann::ordered_json& body, BillingHeader billing);
nlohmann::ordered_json responses_to_chat(const nlohmann::ordered_json& body);
// The next turn's request as the client will send it: `body` (a chat API's request) with the
// reply appended to its conversation in the dialect's own form. Chat: an assistant message
// without its reasoning (OpenAI clients drop reasoning_content); Messages: an assistant message
// of thinking, text and tool_use blocks; Responses: the reply's output items. Throws api_json::Bad
// where `body` is not a chat request.
nlohmann::ordered_json with_reply(Api api, const nlohmann::ordered_json& body,
                                  const engine::ChatMessageOut& reply);
// Claude Code's billing header line, as `mode` asks (a system text that is not one is unchanged).
std::string billing_header(std::string system_text, BillingHeader mode);

}  // namespace kvstash::server
