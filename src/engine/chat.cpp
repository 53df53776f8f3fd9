#include "engine/chat.h"

#include <chat.h>
#include <common.h>
#include <json-schema-to-grammar.h>
#include <llama.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <regex>
#include <thread>
#include <unordered_map>

namespace kvstash::engine {

namespace {

common_json parse_json(const std::string& text, const char* what) {
  try {
    return common_json::parse(text);
  } catch (const std::exception& e) {
    throw ChatError(std::string(what) + " is not valid JSON: " + e.what());
  }
}

common_reasoning_format reasoning_format(const std::string& name) {
  if (name.empty() || name == "auto") return COMMON_REASONING_FORMAT_AUTO;
  if (name == "none") return COMMON_REASONING_FORMAT_NONE;
  if (name == "deepseek") return COMMON_REASONING_FORMAT_DEEPSEEK;
  if (name == "deepseek-legacy") return COMMON_REASONING_FORMAT_DEEPSEEK_LEGACY;
  throw ChatError("'reasoning_format' must be one of none, auto, deepseek, deepseek-legacy; got '" +
                  name + "'");
}

common_chat_tool_choice tool_choice(const std::string& s) {
  if (s == "auto") return COMMON_CHAT_TOOL_CHOICE_AUTO;
  if (s == "none") return COMMON_CHAT_TOOL_CHOICE_NONE;
  if (s == "required") return COMMON_CHAT_TOOL_CHOICE_REQUIRED;
  throw ChatError("'tool_choice' must be auto, none, required or a function; got '" + s + "'");
}

// Tool-call ids are unique per server process; clients echo them back in tool messages.
std::string next_tool_call_id() {
  static std::atomic<uint64_t> n{0};
  return "call_kvs" + std::to_string(++n);
}

// tool_choice "required" means the reply is tool calls (OpenAI). llama.cpp's tool grammar
// still admits free text before the first call (`root ::= ... until-N? tool-calls`), which a
// model can fill forever; drop that optional preamble from the root rule. Reasoning stays.
// Where the rule has another shape the grammar is left as llama.cpp made it.
std::string calls_only(const std::string& grammar) {
  static const std::regex preamble(
      R"((^|\n)(root ::= [^\n]*?) until-[0-9]+\? (tool-calls?)[ ]*(\n|$))");
  return std::regex_replace(grammar, preamble, "$1$2 $3$4",
                            std::regex_constants::format_first_only);
}

ToolCall to_call(const common_chat_tool_call& c) { return {c.id, c.name, c.arguments}; }

// A request the template failed to render may carry a JSON schema that llama.cpp cannot turn
// into a grammar: that schema, not the template, is what the client must be told about.
void check_schemas(const std::string& json_schema, const common_json& tools) {
  if (!json_schema.empty()) grammar_from_json_schema(json_schema);
  if (!tools.is_array()) return;
  for (size_t i = 0; i < tools.size(); ++i) {
    const auto fn = tools[i].value("function", common_json::object());
    if (!fn.is_object() || !fn.contains("parameters")) continue;
    try {
      json_schema_to_grammar(fn.at("parameters"));
    } catch (const std::exception& e) {
      throw ChatError("'tools[" + std::to_string(i) +
                      "].function.parameters' is not a usable JSON schema: " + e.what());
    }
  }
}

}  // namespace

struct ChatParser::Impl {
  common_chat_parser_params params;
};

ChatParser::ChatParser() : impl_(std::make_unique<Impl>()) {}
ChatParser::~ChatParser() = default;

struct ChatParser::Reply::State {
  std::shared_ptr<const ChatParser> parser;
  std::string text;
  common_chat_msg msg;
  std::vector<std::string> ids;
  std::vector<size_t> announced;  // tool calls whose id and name were sent
  bool broken = false;            // the format's parser gave up: the rest is plain content
};

ChatParser::Reply::Reply(std::shared_ptr<const ChatParser> p) : st_(std::make_unique<State>()) {
  st_->parser = std::move(p);
}
ChatParser::Reply::~Reply() = default;
ChatParser::Reply::Reply(Reply&&) noexcept = default;

std::vector<ChatDelta> ChatParser::Reply::update(const std::string& text_added, bool partial) {
  State& s = *st_;
  s.text += text_added;
  common_chat_msg next;
  if (!s.broken) {
    try {
      next = common_chat_parse(s.text, partial, s.parser->impl_->params);
    } catch (const std::exception&) {
      // A partial reply may not parse yet; a final one that does not parse is plain content.
      if (partial) return {};
      s.broken = true;
    }
  }
  if (s.broken) {
    next = common_chat_msg();
    next.role = "assistant";
    next.content = s.text;
  }
  if (next.empty() && partial) return {};
  next.set_tool_call_ids(s.ids, next_tool_call_id);
  std::vector<common_chat_msg_diff> diffs;
  try {
    diffs = common_chat_msg_diff::compute_diffs(s.msg, next);
  } catch (const std::exception&) {
    if (partial) return {};  // a reparse that disagrees with what was sent: wait for more text
  }
  // A tool call is announced (id and name, once, complete) when its arguments begin or the
  // reply ends: while partial, a name may still grow.
  std::vector<ChatDelta> out;
  auto announce = [&](size_t i, const std::string& args) {
    ChatDelta c;
    c.tool_index = static_cast<int>(i);
    c.tool = {next.tool_calls[i].id, next.tool_calls[i].name, args};
    s.announced.push_back(i);
    out.push_back(std::move(c));
  };
  auto announced = [&](size_t i) {
    return std::find(s.announced.begin(), s.announced.end(), i) != s.announced.end();
  };
  for (const auto& d : diffs) {
    if (d.tool_call_index == std::string::npos) {
      out.push_back({d.content_delta, d.reasoning_content_delta, -1, {}});
      continue;
    }
    const size_t i = d.tool_call_index;
    if (announced(i)) {
      if (!d.tool_call_delta.arguments.empty()) {
        ChatDelta c;
        c.tool_index = static_cast<int>(i);
        c.tool.arguments = d.tool_call_delta.arguments;
        out.push_back(std::move(c));
      }
    } else if (!next.tool_calls[i].name.empty() &&
               (!next.tool_calls[i].arguments.empty() || !partial)) {
      announce(i, next.tool_calls[i].arguments);
    }
  }
  if (!partial) {
    for (size_t i = 0; i < next.tool_calls.size(); ++i) {
      if (!announced(i) && !next.tool_calls[i].name.empty())
        announce(i, next.tool_calls[i].arguments);
    }
  }
  s.msg = std::move(next);
  msg_.content = s.msg.content;
  msg_.reasoning_content = s.msg.reasoning_content;
  msg_.tool_calls.clear();
  for (const auto& c : s.msg.tool_calls) msg_.tool_calls.push_back(to_call(c));
  return out;
}

struct ChatTemplates::Impl {
  const Model& model;
  common_chat_templates_ptr tmpls;
  // Prefix renderings seen before: key (settings and messages [0, i]) -> length and hash of the
  // rendering. A few bytes each; the oldest go first.
  struct Memo {
    size_t len;
    uint64_t hash;
    ChatRender::PrefixTokens tokens;
  };
  static constexpr size_t kMemo = 1 << 16;
  std::mutex mu;
  std::unordered_map<uint64_t, Memo> memo;
  std::deque<uint64_t> order;
};

ChatTemplates::ChatTemplates(const Model& model, const std::string& override_src)
    : impl_(new Impl{model, nullptr, {}, {}, {}}) {
  try {
    impl_->tmpls = common_chat_templates_init(model.get(), override_src);
  } catch (const std::exception& e) {
    // llama.cpp rethrows a template's parse error as a bare std::exception (its message logged
    // only): parse the source again for the message.
    std::string why = e.what();
    const char* own = llama_model_chat_template(model.get(), nullptr);
    const std::string src = !override_src.empty() ? override_src : own ? own : "";
    try {
      common_chat_template check(src, "", "");
    } catch (const std::exception& parse) {
      why = parse.what();
    }
    throw std::runtime_error("cannot load the chat template: " + why);
  }
  if (!impl_->tmpls) throw std::runtime_error("cannot load the chat template");
}

ChatTemplates::~ChatTemplates() = default;

std::string ChatTemplates::source() const {
  return common_chat_templates_source(impl_->tmpls.get());
}

std::map<std::string, bool> ChatTemplates::caps() const {
  return common_chat_templates_get_caps(impl_->tmpls.get());
}

namespace {
// The renderings of a request's message prefixes [0, i], which give its boundaries (ChatRender::
// prefix_ends). Each prefix is rendered as the full prompt is, only shorter, without the
// generation prompt, and without building a grammar (tool_choice none, which templates do not
// see): a message start is where that rendering ends, if it is a prefix of the whole. Renderings
// are remembered by a hash of the settings and messages [0, i]; the ones not remembered are
// rendered in parallel stripes (an agent's turn adds two or three messages, a new conversation
// may bring dozens) while the caller renders the full prompt.
class Prefixes {
 public:
  Prefixes(ChatTemplates::Impl& impl, const ChatInput& in,
           const common_chat_templates_inputs& inputs, const common_json& msgs, bool enabled,
           const RenderBudget& budget)
      : impl_(impl), all_(inputs.messages), base_(inputs), budget_(budget) {
    if (!enabled) return;
    base_.messages.clear();
    base_.add_generation_prompt = false;
    base_.json_schema.clear();
    base_.grammar.clear();
    base_.tool_choice = COMMON_CHAT_TOOL_CHOICE_NONE;
    const std::string settings = in.tools_json + '\x1f' + in.reasoning_format + '\x1f' +
                                 (inputs.enable_thinking ? "1" : "0");
    uint64_t key = XXH3_64bits(settings.data(), settings.size());
    for (const auto& [k, v] : in.template_kwargs) {
      key = XXH3_64bits_withSeed(k.data(), k.size(), key);
      key = XXH3_64bits_withSeed(v.data(), v.size(), key);
    }
    std::vector<size_t> missing;
    {
      std::lock_guard lock(impl_.mu);
      for (size_t i = 0; i < inputs.messages.size(); ++i) {
        const std::string one = msgs.at(i).dump();
        key = XXH3_64bits_withSeed(one.data(), one.size(), key);
        auto it = impl_.memo.find(key);
        items_.push_back(Item{key,
                              it != impl_.memo.end() ? std::optional(it->second) : std::nullopt,
                              {},
                              false,
                              {},
                              {}});
        if (!items_.back().memo) missing.push_back(i);
      }
    }
    // Each rendering is a task of its own: a prefix, and for an assistant message followed by
    // another (where templates tend to render the last message differently) the two renderings
    // of its cut, so that the cut costs no time beside the full prompt's rendering.
    std::vector<std::pair<size_t, const char*>> renders;  // item, placeholder (null: the prefix)
    for (const size_t i : missing) {
      renders.emplace_back(i, nullptr);
      if (i + 1 < all_.size() && all_[i].role == "assistant") {
        items_[i].cut_ahead = true;
        renders.emplace_back(i, "A");
        renders.emplace_back(i, "B");
      }
    }
    const size_t stripes =
        std::min<size_t>(renders.size(), std::max(1u, std::thread::hardware_concurrency()));
    for (size_t s = 0; s < stripes; ++s) {
      tasks_.push_back(std::async(std::launch::async, [this, renders, s, stripes] {
        for (size_t j = s; j < renders.size(); j += stripes) {
          const auto [i, placeholder] = renders[j];
          Item& it = items_[i];
          if (!within_budget()) {
            it.skipped = true;
            continue;
          }
          if (!placeholder) {
            it.text = render_prefix(i);
          } else {
            (placeholder[0] == 'A' ? it.cut_a : it.cut_b) = render_with_next(i, placeholder);
          }
        }
      }));
    }
  }
  ~Prefixes() {
    for (auto& t : tasks_) t.wait();
  }

  // Waits for the renderings and fills r.prefix_ends, prefix_keys and prefix_tokens.
  void finish(ChatRender& r) {
    for (auto& t : tasks_) t.get();
    tasks_.clear();
    if (gone_) throw ChatCancelled("the client went away while its request was rendered");
    const std::string& full = r.prompt;
    auto matches = [&](const Impl::Memo& m) {
      return m.len > 0 && m.len <= full.size() && XXH3_64bits(full.data(), m.len) == m.hash;
    };
    for (size_t i = 0; i < items_.size(); ++i) {
      Item& it = items_[i];
      r.prefix_keys.push_back(it.key);
      r.prefix_tokens.emplace_back();
      if (it.memo && matches(*it.memo)) {
        r.prefix_ends.push_back(it.memo->len);
        r.prefix_tokens.back() = it.memo->tokens;
        continue;
      }
      if (it.skipped || (it.memo && !within_budget())) {
        r.prefix_ends.push_back(0);
        r.complete = false;
        continue;
      }
      // Remembered but no longer a prefix (a template may render earlier messages differently
      // once later ones exist): rendered now, and remembered anew if it is one.
      if (it.memo) it.text = render_prefix(i);
      Impl::Memo m{it.text.size(), XXH3_64bits(it.text.data(), it.text.size()), {}};
      bool prefix = !it.text.empty() && matches(m);
      if (!prefix && i + 1 < items_.size()) {
        // A message the template renders differently when it is the last one (Qwen3 closes the
        // last assistant turn with a think block): its end is where renderings with two
        // placeholder contents for the next message part, which every later prompt shares.
        it.text = it.cut_ahead ? common_prefix(it.cut_a, it.cut_b) : render_cut(i);
        m = {it.text.size(), XXH3_64bits(it.text.data(), it.text.size()), {}};
        prefix = !it.text.empty() && matches(m);
      }
      r.prefix_ends.push_back(prefix ? it.text.size() : 0);
      if (!prefix) continue;
      std::lock_guard lock(impl_.mu);
      if (auto [pos, added] = impl_.memo.insert_or_assign(it.key, m); added) {
        impl_.order.push_back(it.key);
      }
      if (impl_.order.size() > Impl::kMemo) {
        impl_.memo.erase(impl_.order.front());
        impl_.order.pop_front();
      }
    }
  }

 private:
  using Impl = ChatTemplates::Impl;
  struct Item {
    uint64_t key;
    std::optional<Impl::Memo> memo;
    std::string text;  // the rendering, where it was not remembered; "" if the template refused
    bool cut_ahead = false;    // cut_a and cut_b were rendered with the others
    std::string cut_a, cut_b;  // render_with_next(i, "A") and (i, "B")
    bool skipped = false;      // left without a boundary (RenderBudget)
  };
  // Whether another rendering may start: before the deadline, with the client still there.
  bool within_budget() {
    if (gone_) return false;
    if (budget_.cancelled && budget_.cancelled()) {
      gone_ = true;
      return false;
    }
    return std::chrono::steady_clock::now() < budget_.deadline;
  }
  std::string render_prefix(size_t i) const {
    auto pin = base_;
    pin.messages.assign(all_.begin(), all_.begin() + static_cast<std::ptrdiff_t>(i + 1));
    try {
      return common_chat_templates_apply(impl_.tmpls.get(), pin).prompt;
    } catch (const std::exception&) {
      return "";
    }
  }

  // Messages [0, i] and the next one with `placeholder` for its content.
  std::string render_with_next(size_t i, const char* placeholder) const {
    auto pin = base_;
    pin.messages.assign(all_.begin(), all_.begin() + static_cast<std::ptrdiff_t>(i + 2));
    auto& next = pin.messages.back();
    next.content = placeholder;
    next.content_parts.clear();
    try {
      return common_chat_templates_apply(impl_.tmpls.get(), pin).prompt;
    } catch (const std::exception&) {
      return "";
    }
  }
  // The common prefix of two renderings with different placeholders for the next message: it
  // ends inside the next message, after its header ("" if the template refused either).
  static std::string common_prefix(const std::string& a, const std::string& b) {
    if (a.empty() || b.empty()) return "";
    const auto diff = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
    return a.substr(0, static_cast<size_t>(diff.first - a.begin()));
  }
  std::string render_cut(size_t i) const {
    return common_prefix(render_with_next(i, "A"), render_with_next(i, "B"));
  }

  Impl& impl_;
  const std::vector<common_chat_msg>& all_;  // the request's messages
  common_chat_templates_inputs base_;        // the settings of every prefix, without messages
  std::vector<Item> items_;
  std::vector<std::future<void>> tasks_;
  const RenderBudget& budget_;
  std::atomic<bool> gone_{false};
};
}  // namespace

void ChatTemplates::remember_tokens(uint64_t key, ChatRender::PrefixTokens t) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->memo.find(key);
  if (it != impl_->memo.end()) it->second.tokens = t;
}

ChatRender ChatTemplates::render(const ChatInput& in, bool with_prefixes,
                                 const RenderBudget& budget) const {
  common_chat_templates_inputs inputs;
  const common_json msgs = parse_json(in.messages_json, "'messages'");
  try {
    inputs.messages = common_chat_msgs_parse_oaicompat(msgs);
  } catch (const ChatError&) {
    throw;
  } catch (const std::exception& e) {
    throw ChatError(std::string("'messages': ") + e.what());
  }
  common_json tools_all;
  if (!in.tools_json.empty()) {
    tools_all = parse_json(in.tools_json, "'tools'");
    try {
      inputs.tools = common_chat_tools_parse_oaicompat(tools_all);
    } catch (const std::exception& e) {
      throw ChatError(std::string("'tools': ") + e.what());
    }
  }
  inputs.tool_choice = tool_choice(in.tool_choice);
  if (!in.tool_name.empty()) {
    bool found = false;
    for (const auto& t : inputs.tools) found = found || t.name == in.tool_name;
    if (!found) {
      throw ChatError("'tool_choice' names the function '" + in.tool_name +
                      "', which is not among 'tools'");
    }
    inputs.tool_choice = COMMON_CHAT_TOOL_CHOICE_REQUIRED;
  }
  if (!inputs.tools.empty() && inputs.tool_choice != COMMON_CHAT_TOOL_CHOICE_NONE &&
      !in.grammar.empty()) {
    throw ChatError("'grammar' cannot be combined with 'tools'");
  }
  const auto caps = common_chat_templates_get_caps(impl_->tmpls.get());
  inputs.parallel_tool_calls = in.parallel_tool_calls.value_or(
      caps.count("supports_parallel_tool_calls") && caps.at("supports_parallel_tool_calls"));
  inputs.json_schema = in.json_schema;
  inputs.grammar = in.grammar;
  inputs.add_generation_prompt = in.add_generation_prompt;
  inputs.reasoning_format = reasoning_format(in.reasoning_format);
  inputs.enable_thinking = in.enable_thinking.value_or(true);
  inputs.chat_template_kwargs = in.template_kwargs;
  for (const auto& [k, v] : in.template_kwargs)
    parse_json(v, ("chat_template_kwargs." + k).c_str());

  auto apply = [&](const common_chat_templates_inputs& x) {
    try {
      return common_chat_templates_apply(impl_->tmpls.get(), x);
    } catch (const std::exception& e) {
      check_schemas(in.json_schema, tools_all);
      throw ChatError(std::string("the chat template cannot render this request: ") + e.what());
    }
  };
  // The prefixes no earlier request rendered are rendered on other threads meanwhile.
  Prefixes prefixes(*impl_, in, inputs, msgs, with_prefixes, budget);
  common_chat_params cp = apply(inputs);
  if (!in.tool_name.empty()) {
    // The prompt shows every tool (so it stays a cacheable prefix of the agent's other
    // requests); the grammar and parser admit only the named one.
    auto only = inputs;
    std::erase_if(only.tools, [&](const common_chat_tool& t) { return t.name != in.tool_name; });
    std::string prompt = std::move(cp.prompt);
    cp = apply(only);
    cp.prompt = std::move(prompt);
  }
  if (inputs.tool_choice == COMMON_CHAT_TOOL_CHOICE_REQUIRED) cp.grammar = calls_only(cp.grammar);

  ChatRender r;
  r.prompt = cp.prompt;
  for (const auto& m : inputs.messages) r.roles.push_back(m.role);
  r.format = common_chat_format_name(cp.format);
  r.stops = cp.additional_stops;
  const llama_vocab* vocab = llama_model_get_vocab(impl_->model.get());

  // The grammar: the format's (tool calls, or a schema it wove in), else the client's schema or
  // grammar. A chat grammar starts at the generation prompt, which the prompt already holds.
  if (!cp.grammar.empty()) {
    r.grammar.grammar = cp.grammar;
    r.grammar.lazy = cp.grammar_lazy;
    if (!cp.grammar_lazy && !cp.generation_prompt.empty()) {
      const auto toks = common_tokenize(vocab, cp.generation_prompt, false, true);
      for (size_t i = 0; i < toks.size(); ++i) {
        const std::string piece = common_token_to_piece(vocab, toks[i], true);
        // Some tokenizers put a space before the first special token; the grammar has none.
        if (i == 0 && !piece.empty() && std::isspace(static_cast<unsigned char>(piece[0])) &&
            !std::isspace(static_cast<unsigned char>(cp.generation_prompt[0]))) {
          continue;
        }
        r.grammar.prefill.push_back(toks[i]);
      }
    }
  } else if (!in.json_schema.empty()) {
    r.grammar.grammar = grammar_from_json_schema(in.json_schema);
  } else {
    r.grammar.grammar = in.grammar;
  }
  for (const auto& t : cp.grammar_triggers) {
    switch (t.type) {
      case COMMON_GRAMMAR_TRIGGER_TYPE_WORD:
        r.grammar.trigger_patterns.push_back(regex_escape(t.value));
        break;
      case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN:
        r.grammar.trigger_patterns.push_back(t.value);
        break;
      case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN_FULL: {
        const auto& p = t.value;
        r.grammar.trigger_patterns.push_back(
            p.empty() ? "^$" : (p.front() != '^' ? "^" : "") + p + (p.back() != '$' ? "$" : ""));
        break;
      }
      case COMMON_GRAMMAR_TRIGGER_TYPE_TOKEN:
        r.grammar.trigger_tokens.push_back(t.token);
        break;
    }
  }

  auto parser = std::shared_ptr<ChatParser>(new ChatParser());
  auto& pp = parser->impl_->params;
  pp = common_chat_parser_params(cp);
  pp.reasoning_format = inputs.reasoning_format;
  pp.parse_tool_calls = !inputs.tools.empty() && inputs.tool_choice != COMMON_CHAT_TOOL_CHOICE_NONE;
  if (!cp.parser.empty()) {
    try {
      pp.parser.load(cp.parser);
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string("cannot load the chat format's parser: ") + e.what());
    }
  }
  r.parser = std::move(parser);

  if (with_prefixes) prefixes.finish(r);
  return r;
}

std::string grammar_from_json_schema(const std::string& schema_json) {
  common_json schema = parse_json(schema_json, "the JSON schema");
  try {
    return json_schema_to_grammar(schema);
  } catch (const std::exception& e) {
    throw ChatError(std::string("invalid JSON schema: ") + e.what());
  }
}

}  // namespace kvstash::engine
