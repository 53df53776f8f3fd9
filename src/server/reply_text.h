// Generated text on its way to the client: cut at the first stop string, and held back while it
// could still be the start of one or ends inside a UTF-8 character. Pure; one per reply.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace kvstash::server {

class TextCutter {
 public:
  explicit TextCutter(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  struct Step {
    std::string out;                // text safe to send now
    std::optional<size_t> stopped;  // index in `stops` of the stop string that ended the reply
  };
  // Adds a token's text. After a step that stopped, the reply is over: add() must not be called.
  Step add(const std::string& piece);
  // The end of the reply (EOS, length, cancel): what was held back, as it is.
  std::string flush();

 private:
  // How much of text_ can be sent: not a tail that begins a stop string, nor a torn character.
  size_t safe_end() const;

  std::vector<std::string> stops_;
  std::string text_;
  size_t emitted_ = 0;
};

}  // namespace kvstash::server
