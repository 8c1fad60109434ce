#pragma once
// Socket.IO v5 packet codec (spec: socketio-server.md §2.1-2.2, §2.7). Pure: no I/O, no
// logging, no exceptions on hostile input. JSON stays raw text end to end, so the server can
// echo and relay arguments byte for byte without re-serialising them (§2.7); it is validated
// with nlohmann's SAX parser, never turned into a DOM here.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/json.hpp"
#include "protocol/result.hpp"

namespace steedos::protocol::sio {

/// The wire digit is '0' + the enumerator's value.
enum class Type : std::uint8_t {
  Connect = 0,
  Disconnect = 1,
  Event = 2,
  Ack = 3,
  ConnectError = 4,
  BinaryEvent = 5,
  BinaryAck = 6,
};

struct Packet {
  Type type = Type::Event;
  std::string nsp = "/";
  std::optional<std::uint64_t> ack_id;
  std::size_t attachments = 0;  // BinaryEvent / BinaryAck only, 1..max_attachments
  std::string payload;          // raw JSON text exactly as received; empty if none

  friend bool operator==(const Packet& a, const Packet& b) {
    return a.type == b.type && a.nsp == b.nsp && a.ack_id == b.ack_id &&
           a.attachments == b.attachments && a.payload == b.payload;
  }
  friend bool operator!=(const Packet& a, const Packet& b) { return !(a == b); }
};

struct DecodeLimits {
  /// socket.io-parser >= 4.2.6 (CVE-2026-33151): more attachments close the connection.
  std::size_t max_attachments = 10;
  /// Deepest array/object nesting accepted (kMaxBrowserJsonDepth, protocol/json.hpp). Not a
  /// reference rule: it bounds the recursion of whatever later turns the payload into a DOM and
  /// serialises it again (nlohmann's dump() recurses), so a 1 MB "[[[[..." cannot overflow the
  /// stack there.
  std::size_t max_depth = kMaxBrowserJsonDepth;
};

enum class Error : std::uint8_t {
  None,
  Empty,               // empty string (the reference reads it as CONNECT; no client sends it)
  UnknownType,         // first character not '0'-'6'
  InvalidAttachments,  // 5/6 without `<digits>-`, or 0 attachments
  TooManyAttachments,  // more than DecodeLimits::max_attachments
  InvalidAckId,        // ack id does not fit in 64 bits
  InvalidJson,         // the rest of the packet is not one JSON value
  TooDeep,             // nesting beyond DecodeLimits::max_depth
  InvalidPayload,      // valid JSON of the wrong shape for the packet type
  InvalidPlaceholder,  // 5/6: a {"_placeholder":true} whose num is not an attachment index
};

/// socket.io-parser's RESERVED_EVENTS (`connect`, `connect_error`, `disconnect`,
/// `disconnecting`, `newListener`, `removeListener`): names an EVENT may not carry, in either
/// direction, since a client could not tell them from the library's own events.
bool is_reserved_event(std::string_view name);

/// Short English text for logs ("invalid payload", ...).
const char* error_text(Error error);

template <typename T>
using Result = protocol::Result<Error, T>;

/// Decodes one Socket.IO packet (an Engine.IO text message without its '4'), following
/// socket.io-parser 4.2.7 `decodeString` + `isPayloadValid`:
///   `<type>[<attachments>-][<nsp>,][<ack id>][<JSON>]`
/// * attachments (types 5/6 only): one or more ASCII digits then '-', value 1..max_attachments;
/// * namespace iff the next character is '/', up to the first ',' (consumed) or the end;
/// * ack id: ASCII digits right after that;
/// * JSON: the rest, one JSON value (surrounding JSON whitespace allowed, kept in `payload`):
///   CONNECT object or absent; DISCONNECT absent; EVENT / BINARY_EVENT a non-empty array whose
///   first element is a number or a string other than the reserved event names; ACK /
///   BINARY_ACK an array; CONNECT_ERROR an object or a string. EVENT, ACK and CONNECT_ERROR
///   require a payload (the reference accepts them bare; clients never send that).
/// * 5/6: every object whose last `_placeholder` key is `true` needs an integral `num` in
///   [0, attachments) (the reference checks that when the last attachment arrives; the
///   outcome, closing the connection, is the same).
/// Stricter than the reference only where JavaScript coercion accepts junk (`Number(" ")` is
/// 0): type, attachment count and ack id are plain ASCII digits here. JSON is checked by
/// nlohmann, which unlike JSON.parse rejects lone UTF-16 surrogate escapes and numbers
/// overflowing a double.
Result<Packet> decode(std::string_view text, const DecodeLimits& limits = {});

/// `<type>[<attachments>-][<nsp>,][<ack id>]<payload>`; the namespace is written only when it
/// is not "/" (like the reference encoder). Trusts its input: `nsp` must start with '/' and
/// hold no ',', `payload` must be valid JSON, for decode() to read the result back.
std::string encode(const Packet& packet);

/// The raw text of every top-level element of a JSON array, without surrounding whitespace,
/// pointing into `json_array`. Meant for payloads decode() accepted: it does not validate
/// scalars. On any input it stays in bounds and returns nullopt when the structure is not an
/// array of non-empty elements (unbalanced brackets or strings, trailing garbage, `[1,,2]`).
std::optional<std::vector<std::string_view>> split_array(std::string_view json_array);

/// "[a,b,c]" from raw JSON element texts (no validation, no re-serialisation).
std::string join_array(const std::vector<std::string_view>& elements);

/// The event name of an EVENT / BINARY_EVENT payload decode() accepted: the unescaped string,
/// or the number's JSON text for numeric event names. nullopt if the first element is neither.
std::optional<std::string> event_name(std::string_view payload);

/// `{"_placeholder":true,"num":<index>}`, what replaces the index-th binary value in the JSON of
/// an outgoing BINARY_EVENT / BINARY_ACK.
std::string placeholder(std::size_t index);

/// True when every placeholder object of `payload` (the rules of decode(), which already runs
/// this for types 5/6) refers to one of `attachments` attachments. False for invalid JSON too.
bool placeholders_valid(std::string_view payload, std::size_t attachments);

/// A BINARY_EVENT / BINARY_ACK with all its attachments. The server relays attachments as
/// bytes, in order; the JSON keeps its placeholders.
struct BinaryPacket {
  Packet packet;
  std::vector<std::string> attachments;
};

/// Collects the binary Engine.IO messages that follow a BINARY_EVENT / BINARY_ACK. The caller
/// owns the timing (a completion deadline, and closing on a text message that arrives first).
class BinaryPacketBuilder {
 public:
  enum class Status { NeedMore, Complete, TooLarge };

  /// `packet` is a decoded type 5/6 packet (attachments >= 1). `max_total_bytes` bounds the sum
  /// of attachment sizes (socketioxide GHSA-55mf-67qm-4wpg: unbounded buffering).
  explicit BinaryPacketBuilder(Packet packet, std::size_t max_total_bytes = SIZE_MAX);

  /// Adds the next attachment. After Complete or TooLarge further calls return the same status
  /// and store nothing.
  Status add(std::string bytes);

  std::size_t expected() const { return result_.packet.attachments; }
  std::size_t received() const { return result_.attachments.size(); }
  bool complete() const { return received() == expected(); }
  const BinaryPacket& current() const { return result_; }
  /// Moves the packet and its attachments out; call once, after Complete.
  BinaryPacket take() { return std::move(result_); }

 private:
  BinaryPacket result_;
  std::size_t max_total_bytes_;
  std::size_t total_bytes_ = 0;
  bool too_large_ = false;
};

}  // namespace steedos::protocol::sio
