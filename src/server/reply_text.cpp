#include "server/reply_text.h"

#include <algorithm>

namespace kvstash::server {

namespace {

// The length of an incomplete UTF-8 sequence at the end of `s` (0 if it ends on a whole one).
size_t torn_utf8_tail(const std::string& s, size_t end) {
  size_t back = 0;
  while (back < 4 && back < end && (static_cast<unsigned char>(s[end - 1 - back]) & 0xC0) == 0x80)
    ++back;
  if (back >= end) return 0;
  const unsigned char lead = static_cast<unsigned char>(s[end - 1 - back]);
  const size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  return need > back + 1 ? back + 1 : 0;
}

}  // namespace

size_t TextCutter::safe_end() const {
  size_t safe = text_.size();
  for (const auto& st : stops_) {
    for (size_t k = std::min(st.size() - 1, text_.size()); k > 0; --k) {
      if (text_.compare(text_.size() - k, k, st, 0, k) == 0) {
        safe = std::min(safe, text_.size() - k);
        break;
      }
    }
  }
  return safe - torn_utf8_tail(text_, safe);
}

TextCutter::Step TextCutter::add(const std::string& piece) {
  Step step;
  text_ += piece;
  // The earliest stop string wins; a match may begin in text already held back.
  size_t cut = std::string::npos;
  for (size_t i = 0; i < stops_.size(); ++i) {
    const std::string& st = stops_[i];
    const size_t from = emitted_ > st.size() ? emitted_ - st.size() : 0;
    const size_t at = text_.find(st, from);
    if (at < cut) {
      cut = at;
      step.stopped = i;
    }
  }
  size_t end = cut;
  if (cut != std::string::npos) {
    text_.resize(cut);
    end = std::max(emitted_, cut);
  } else {
    end = std::max(emitted_, safe_end());
  }
  step.out = text_.substr(emitted_, end - emitted_);
  emitted_ = end;
  return step;
}

std::string TextCutter::flush() {
  std::string rest = text_.substr(std::min(emitted_, text_.size()));
  emitted_ = text_.size();
  return rest;
}

}  // namespace kvstash::server
