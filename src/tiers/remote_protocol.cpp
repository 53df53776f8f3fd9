#include "tiers/remote_protocol.h"

#include <charconv>
#include <stdexcept>
#include <vector>

namespace kvstash::tiers {

namespace {

// The whole of `s` as a decimal number in [lo, hi], or nullopt.
template <class T>
std::optional<T> number(std::string_view s, T lo, T hi) {
  T v{};
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v < lo || v > hi) {
    return std::nullopt;
  }
  return v;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const size_t at = s.find(sep);
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    int v = 0;
    if (s.size() - i < 3) return std::nullopt;
    const auto [end, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
    if (ec != std::errc() || end != s.data() + i + 3) return std::nullopt;
    out += static_cast<char>(v);
    i += 2;
  }
  return out;
}

}  // namespace

RedisEndpoint parse_redis_url(const std::string& url) {
  const std::string scheme = "redis://";
  if (url.rfind(scheme, 0) != 0) {
    throw std::invalid_argument(
        "--cache-remote must look like redis://[[user]:password@]host:port, "
        "got '" +
        url + "'");
  }
  std::string_view rest(url);
  rest.remove_prefix(scheme.size());
  rest = rest.substr(0, rest.find('/'));
  RedisEndpoint ep;
  if (const size_t at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = rest.substr(0, at);
    const size_t colon = userinfo.find(':');
    if (colon == std::string_view::npos) {
      throw std::invalid_argument(
          "--cache-remote: write the password as redis://:password@host "
          "(or redis://user:password@host)");
    }
    const auto user = percent_decode(userinfo.substr(0, colon));
    const auto password = percent_decode(userinfo.substr(colon + 1));
    if (!user || !password || password->empty()) {
      throw std::invalid_argument("--cache-remote: bad user or password in the URL");
    }
    ep.user = *user;
    ep.password = *password;
    rest.remove_prefix(at + 1);
  }
  if (const size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    const auto port = number<int>(rest.substr(colon + 1), 1, 65535);
    if (!port) throw std::invalid_argument("--cache-remote: bad port in the URL");
    ep.port = *port;
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) throw std::invalid_argument("--cache-remote names no host");
  ep.host = std::string(rest);
  return ep;
}

std::string display_url(const RedisEndpoint& ep) {
  return "redis://" + (ep.user.empty() ? "" : ep.user + "@") + ep.host + ":" +
         std::to_string(ep.port);
}

std::optional<Redirect> parse_redirect(std::string_view error) {
  const auto f = split(error, ' ');
  if (f.size() != 3 || (f[0] != "MOVED" && f[0] != "ASK")) return std::nullopt;
  if (!number<int>(f[1], 0, 16383)) return std::nullopt;
  const size_t colon = f[2].rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const auto port = number<int>(f[2].substr(colon + 1), 1, 65535);
  if (!port) return std::nullopt;
  return Redirect{f[0] == "ASK" ? Redirect::kAsk : Redirect::kMoved,
                  std::string(f[2].substr(0, colon)), *port};
}

std::string format_listing_member(const cache::ObjectMeta& e) {
  return e.key.hex() + ":" + std::to_string(e.n_tokens) + ":" + std::to_string(e.depth) + ":" +
         std::to_string(static_cast<int>(e.reason)) + ":" + (e.has_logits ? "1" : "0");
}

std::optional<cache::ObjectMeta> parse_listing_member(std::string_view member,
                                                      const cache::Key& parent) {
  const auto f = split(member, ':');
  if (f.size() != 5) return std::nullopt;
  const auto key = cache::Key::from_hex(std::string(f[0]));
  const auto tokens = number<uint32_t>(f[1], 1, UINT32_MAX);
  const auto depth = number<uint32_t>(f[2], 0, UINT32_MAX);
  const auto reason = number<int>(f[3], 1, 5);
  if (!key || !tokens || !depth || !reason || (f[4] != "0" && f[4] != "1")) return std::nullopt;
  cache::ObjectMeta m;
  m.kind = cache::ObjKind::kEntry;
  m.key = *key;
  m.parent = parent;
  m.n_tokens = *tokens;
  m.depth = *depth;
  m.reason = static_cast<cache::Reason>(*reason);
  m.has_logits = f[4] == "1";
  return m;
}

bool listing_fits(const cache::ObjectMeta& e, uint32_t depth, uint32_t chunk) {
  return chunk > 0 && e.kind == cache::ObjKind::kEntry && e.depth == depth &&
         e.n_tokens / chunk == depth;
}

}  // namespace kvstash::tiers
