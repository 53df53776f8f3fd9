#include "server/http_gate.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>

namespace kvstash::server {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The host of "host", "host:port", "[v6]:port" or an Origin "scheme://host[:port]".
std::string host_of(std::string h) {
  if (const auto scheme = h.find("://"); scheme != std::string::npos) h = h.substr(scheme + 3);
  if (const auto slash = h.find('/'); slash != std::string::npos) h.resize(slash);
  if (!h.empty() && h[0] == '[') {
    const auto close = h.find(']');
    return close == std::string::npos ? h : h.substr(1, close - 1);
  }
  if (std::count(h.begin(), h.end(), ':') == 1) h.resize(h.find(':'));
  return lower(h);
}

bool ip_literal(const std::string& h) {
  unsigned char buf[16];
  return inet_pton(AF_INET, h.c_str(), buf) == 1 || inet_pton(AF_INET6, h.c_str(), buf) == 1;
}

bool trusted_host(const std::string& header, const GateConfig& cfg) {
  const std::string h = host_of(header);
  if (h.empty()) return false;
  if (ip_literal(h) || h == "localhost" || ends_with(h, ".localhost")) return true;
  return std::any_of(cfg.allowed_hosts.begin(), cfg.allowed_hosts.end(),
                     [&](const std::string& a) { return lower(a) == h; });
}

bool is_open_page(const GateRequest& r) {
  return (r.method == "GET" || r.method == "HEAD") &&
         (r.path == "/health" || r.path == "/ready" || r.path == "/" || r.path == "/status");
}

bool simple_body_type(const std::string& content_type) {
  std::string t = lower(content_type);
  t = t.substr(0, t.find(';'));
  t.erase(std::remove_if(t.begin(), t.end(), [](unsigned char c) { return std::isspace(c); }),
          t.end());
  return t == "application/x-www-form-urlencoded" || t == "multipart/form-data" ||
         t == "text/plain";
}

}  // namespace

bool same_secret(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::optional<ApiError> gate(const GateRequest& r, const GateConfig& cfg) {
  if (is_open_page(r)) return std::nullopt;
  if (!cfg.api_key.empty()) {
    const std::string bearer = "Bearer ";
    const bool ok = (r.authorization.rfind(bearer, 0) == 0 &&
                     same_secret(r.authorization.substr(bearer.size()), cfg.api_key)) ||
                    same_secret(r.x_api_key, cfg.api_key) || same_secret(r.api_key, cfg.api_key);
    if (!ok) return ApiError{401, "missing or wrong API key (send Authorization: Bearer <key>)"};
  } else {
    if (!trusted_host(r.host, cfg)) {
      return ApiError{403, "Host '" + r.host +
                               "' is not this server's: use an IP address or localhost, start "
                               "the server with --allowed-host NAME, or set --api-key"};
    }
    if (!r.origin.empty() && !trusted_host(r.origin, cfg)) {
      return ApiError{403, "requests from web pages at '" + r.origin +
                               "' are refused: set --api-key, or --allowed-host for its host"};
    }
  }
  if (r.method == "POST" && simple_body_type(r.content_type)) {
    return ApiError{415, "Content-Type '" + r.content_type +
                             "' is not accepted: send the body as application/json"};
  }
  return std::nullopt;
}

}  // namespace kvstash::server
