// The tier API's one error convention (tier.h): an operation returns Status (nothing to return)
// or Result<T> (a value), either of which holds an IoError when it failed. No exceptions, no
// error strings, no out-parameters, no flags. Failures that leave the object usable (a disk
// tier's directory fsync after the rename, its usage-statistics write) are not errors of the
// operation: the tier logs and counts them (DiskTier::io_errors()).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace kvstash::tiers {

struct IoError {
  enum Kind : uint8_t {
    kMissing,      // the tier does not hold the object (never stored, evicted, expired)
    kDamaged,      // it did, but the copy failed verification; the tier removed it
    kRejected,     // the copy is not authentic (no valid fleet-key tag); the tier removed it
    kUnavailable,  // the tier is not configured, or unreachable (the remote tier is down)
    kFull,         // no space (ENOSPC) or no room in a bounded queue
    kIo,           // any other I/O failure
  };
  Kind kind = kIo;
  std::string what;  // one line, for logs
};

// Success (the default), or an IoError.
class Status {
 public:
  Status() = default;
  Status(IoError e) : err_(std::move(e)) {}  // NOLINT: implicit, so `return IoError{...};` reads
  bool ok() const { return !err_; }
  explicit operator bool() const { return ok(); }
  const IoError& error() const { return *err_; }  // only if !ok()

 private:
  std::optional<IoError> err_;
};

// A value, or an IoError.
template <class T>
class [[nodiscard]] Result {
 public:
  // Implicit, like Status: `return payload;` and `return IoError{...};` both read.
  template <class U = T, class = std::enable_if_t<std::is_convertible_v<U&&, T> &&
                                                  !std::is_same_v<std::decay_t<U>, IoError>>>
  Result(U&& value) : v_(std::in_place_index<0>, std::forward<U>(value)) {}  // NOLINT
  Result(IoError e) : v_(std::in_place_index<1>, std::move(e)) {}            // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }  // only if ok()
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T value_or(T other) const { return ok() ? value() : std::move(other); }
  const IoError& error() const { return std::get<1>(v_); }  // only if !ok()

 private:
  std::variant<T, IoError> v_;
};

}  // namespace kvstash::tiers
