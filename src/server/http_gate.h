// Which requests pass the transport before routing: the API key, the Host a browser may have been
// tricked into using, and the body types a web page can send without asking (pure: headers in,
// a verdict out; http_server.cpp applies it to every request).
//
// Rules, in order:
//   1. GET /health, /ready and the status page's HTML (GET /, /status) pass: they hold no data,
//      and a balancer's health checks carry no key.
//   2. With an API key: every other request needs it (Authorization: Bearer, X-Api-Key or
//      api-key), compared in constant time -> 401. A page in a browser cannot know the key, so
//      rules 3-4 apply only without one.
//   3. Without a key, Host must be an IP literal, "localhost" (or a name under .localhost), or a
//      name given with --allowed-host: a DNS-rebinding page reaches the server under its own
//      domain name -> 403. An Origin header, where sent, must name such a host too -> 403.
//   4. A POST body of a type a page can send cross-origin without a preflight
//      (application/x-www-form-urlencoded, multipart/form-data, text/plain) -> 415: every API
//      client sends application/json.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "server/api.h"

namespace kvstash::server {

struct GateConfig {
  std::string api_key;                     // "" for none
  std::vector<std::string> allowed_hosts;  // --allowed-host names (no port)
};

struct GateRequest {
  std::string method, path;
  std::string host, origin, content_type;         // headers ("" when absent)
  std::string authorization, x_api_key, api_key;  // the three places a key may come in
};

std::optional<ApiError> gate(const GateRequest& r, const GateConfig& cfg);

// Equal, in time that depends only on the lengths.
bool same_secret(const std::string& a, const std::string& b);

}  // namespace kvstash::server
