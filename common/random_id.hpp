#pragma once
// Random identifiers: Engine.IO session ids, Socket.IO socket ids and RFC 4122 version-4 UUIDs
// (Moleculer instance and context ids). One source for all of them: the kernel's CSPRNG
// (getrandom), read in batches per thread, so no id can be guessed from earlier ones and one
// system call serves about a hundred ids (Node's crypto.randomUUID batches the same way).
// Header-only and free of any layer.
#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

namespace steedos {

/// Fills `size` bytes at `out` with random bytes from a per-thread pool refilled from
/// getrandom(). Thread-safe (each thread has its own pool). Throws std::runtime_error only if
/// the kernel refuses randomness. Not fork-safe: a forked child would repeat its parent's pool.
inline void random_bytes(unsigned char* out, std::size_t size) {
  struct Pool {
    unsigned char bytes[2048];
    std::size_t used = sizeof(bytes);
  };
  thread_local Pool pool;
  while (size > 0) {
    if (pool.used == sizeof(pool.bytes)) {
      std::size_t filled = 0;
      while (filled < sizeof(pool.bytes)) {
        const ssize_t n = ::getrandom(pool.bytes + filled, sizeof(pool.bytes) - filled, 0);
        if (n < 0) {
          if (errno == EINTR) continue;
          throw std::runtime_error("getrandom failed");
        }
        filled += static_cast<std::size_t>(n);
      }
      pool.used = 0;
    }
    const std::size_t n = std::min(size, sizeof(pool.bytes) - pool.used);
    std::memcpy(out, pool.bytes + pool.used, n);
    pool.used += n;
    out += n;
    size -= n;
  }
}

/// `bytes` random bytes in unpadded base64url (RFC 4648 §5: A-Z a-z 0-9 '-' '_'), so
/// 4 * bytes / 3 characters rounded up. The default, 15 bytes (120 bits) in 20 characters, is
/// the length of the reference's Engine.IO and Socket.IO ids.
inline std::string random_base64url_id(std::size_t bytes = 15) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string id;
  id.reserve((bytes * 4 + 2) / 3);
  unsigned char group[3];
  for (std::size_t done = 0; done < bytes; done += 3) {
    const std::size_t n = std::min<std::size_t>(3, bytes - done);
    group[1] = group[2] = 0;
    random_bytes(group, n);
    const std::uint32_t bits =
        (std::uint32_t{group[0]} << 16) | (std::uint32_t{group[1]} << 8) | std::uint32_t{group[2]};
    for (std::size_t k = 0; k <= n; ++k) id.push_back(kAlphabet[(bits >> (18 - 6 * k)) & 63]);
  }
  return id;
}

/// An id of at most 20 characters (random_base64url_id()'s default length) held inline: a
/// per-connection object stores its id without a heap block (a std::string keeps 15 inline).
class InlineId {
 public:
  static constexpr std::size_t kCapacity = 20;

  InlineId() = default;
  /// Takes at most kCapacity characters of `text` (the caller passes an id of that length).
  explicit InlineId(std::string_view text)
      : size_(static_cast<unsigned char>(std::min(text.size(), kCapacity))) {
    std::memcpy(data_, text.data(), size_);
  }
  std::string_view view() const { return {data_, size_}; }

 private:
  char data_[kCapacity] = {};
  unsigned char size_ = 0;
};

/// A random RFC 4122 version-4 UUID, lower-case: `xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`.
inline std::string uuid_v4() {
  unsigned char bytes[16];
  random_bytes(bytes, sizeof(bytes));
  bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0f) | 0x40);  // version 4
  bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3f) | 0x80);  // RFC 4122 variant
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < sizeof(bytes); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kHex[bytes[i] >> 4];
    out += kHex[bytes[i] & 0x0f];
  }
  return out;
}

}  // namespace steedos
