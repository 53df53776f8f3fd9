#include "cache/scope_policy.h"

#include <algorithm>
#include <cctype>

namespace kvstash::cache {

namespace {

std::optional<uint32_t> parse_uint(const std::string& s) {
  if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), ::isdigit)) return std::nullopt;
  return static_cast<uint32_t>(std::stoul(s));
}

uint32_t align_down(uint32_t pos, const std::vector<uint32_t>& boundaries) {
  auto it = std::upper_bound(boundaries.begin(), boundaries.end(), pos);
  return it == boundaries.begin() ? 0 : *std::prev(it);
}

}  // namespace

std::string Scope::str() const {
  switch (kind) {
    case Kind::kOff:
      return "off";
    case Kind::kFull:
      return "full";
    case Kind::kFixed:
      return std::to_string(n);
    case Kind::kAuto:
      return "auto:" + std::to_string(n);
  }
  return "full";
}

std::optional<Scope> parse_scope(const std::string& text, std::string* error) {
  Scope s;
  if (text == "off") {
    s.kind = Scope::Kind::kOff;
  } else if (text == "full") {
    s.kind = Scope::Kind::kFull;
  } else if (text == "auto") {
    s.kind = Scope::Kind::kAuto;
    s.n = kDefaultAutoWindow;
  } else if (text.rfind("auto:", 0) == 0) {
    const auto n = parse_uint(text.substr(5));
    if (!n || *n == 0 || *n > 1000) {
      if (error) *error = "invalid scope '" + text + "': auto:N needs 1 <= N <= 1000";
      return std::nullopt;
    }
    s.kind = Scope::Kind::kAuto;
    s.n = *n;
  } else if (const auto n = parse_uint(text); n && *n > 0) {
    s.kind = Scope::Kind::kFixed;
    s.n = *n;
  } else {
    if (error) *error = "invalid scope '" + text + "' (expected off, full, auto, auto:N or N)";
    return std::nullopt;
  }
  return s;
}

ScopeChoice choose_scope_boundary(const Scope& scope, std::span<const Token> prompt,
                                  const std::vector<uint32_t>& boundaries,
                                  const std::vector<std::vector<Token>>& history,
                                  uint32_t min_tokens) {
  ScopeChoice c;
  const auto len = static_cast<uint32_t>(prompt.size());
  auto finish = [&](uint32_t target, std::string head) {
    const uint32_t b = align_down(std::min(target, len > 0 ? len - 1 : 0), boundaries);
    if (b >= min_tokens) {
      c.boundary = b;
      c.log = head + " selected=" + std::to_string(b);
    } else {
      c.log = head + " selected=none (boundary " + std::to_string(b) + " < --cache-min-tokens " +
              std::to_string(min_tokens) + ")";
    }
    return c;
  };
  if (scope.kind == Scope::Kind::kFixed) {
    return finish(scope.n, "kv cache scope " + scope.str() + ":");
  }
  if (scope.kind != Scope::Kind::kAuto) return c;

  // The longest common prefix with each recent request, best first.
  std::vector<uint32_t> lcps;
  const size_t from = history.size() > scope.n ? history.size() - scope.n : 0;
  for (size_t i = from; i < history.size(); ++i) {
    const auto& h = history[i];
    const auto m = std::mismatch(prompt.begin(), prompt.end(), h.begin(), h.end());
    lcps.push_back(static_cast<uint32_t>(m.first - prompt.begin()));
  }
  std::sort(lcps.rbegin(), lcps.rend());
  std::string head = "kv cache scope " + scope.str() + ": " + std::to_string(lcps.size()) +
                     " candidates, longest common prefixes [";
  for (size_t i = 0; i < lcps.size() && i < 5; ++i)
    head += (i ? "," : "") + std::to_string(lcps[i]);
  head += lcps.size() > 5 ? ",...]" : "]";
  if (lcps.empty()) {
    c.log = head + " selected=none (no recent requests)";
    return c;
  }
  return finish(lcps[0], head + " best=" + std::to_string(lcps[0]));
}

PromptHistory::PromptHistory(size_t per_salt, size_t max_salts)
    : per_salt_(std::max<size_t>(per_salt, 1)), max_salts_(std::max<size_t>(max_salts, 1)) {}

void PromptHistory::add(const std::string& salt, std::vector<Token> prompt) {
  if (!salts_.contains(salt) && salts_.size() >= max_salts_) {
    const auto oldest = std::min_element(salts_.begin(), salts_.end(), [](auto& a, auto& b) {
      return a.second.seen < b.second.seen;
    });
    salts_.erase(oldest);
  }
  Prompts& p = salts_[salt];
  p.seen = ++clock_;
  p.prompts.push_back(std::move(prompt));
  if (p.prompts.size() > per_salt_) p.prompts.pop_front();
}

std::vector<std::vector<Token>> PromptHistory::recent(const std::string& salt) const {
  const auto it = salts_.find(salt);
  if (it == salts_.end()) return {};
  return {it->second.prompts.begin(), it->second.prompts.end()};
}

}  // namespace kvstash::cache
