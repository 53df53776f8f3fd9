// Fuzzes request handling that sees client bytes: the JSON bodies of every API dialect and the
// small parsers of user-given strings (scopes, keys, sizes).
#include <cstdint>
#include <string>

#include "cache/scope_policy.h"
#include "core/key.h"
#include "server/api.h"
#include "util/size.h"

using namespace kvstash;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  using server::Api;
  for (auto api :
       {Api::kChat, Api::kCompletions, Api::kLlamaCompletion, Api::kMessages, Api::kResponses}) {
    auto r = server::parse_request(api, body, {151936, server::BillingHeader::kNormalize, {}});
    // As the server sends it: client bytes in a message may be invalid UTF-8.
    if (auto* e = std::get_if<server::ApiError>(&r)) {
      (void)server::error_json(api, *e).dump(-1, ' ', false,
                                             nlohmann::json::error_handler_t::replace);
    }
  }
  try {
    server::check_grammar_size(body, 1 << 20);
  } catch (const std::invalid_argument&) {
  }
  std::string err;
  (void)cache::parse_scope(body, &err);
  (void)cache::Key::from_hex(body);
  try {
    (void)parse_size(body);
  } catch (const std::exception&) {
  }
  return 0;
}
