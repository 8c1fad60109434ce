#pragma once
// The value-or-error every protocol decoder returns instead of throwing on hostile input.

namespace steedos::protocol {

/// A decoded `T` and the codec's error enum `E`, whose `E::None` means success. On failure
/// `value` holds whatever the decoder documents (often what it decoded before the error).
template <typename E, typename T>
struct Result {
  E error = E::None;
  T value{};

  bool ok() const { return error == E::None; }
  explicit operator bool() const { return ok(); }
};

}  // namespace steedos::protocol
