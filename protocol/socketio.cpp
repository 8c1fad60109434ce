#include "protocol/socketio.hpp"

#include <cmath>

#include "protocol/json.hpp"

namespace steedos::protocol::sio {
namespace {

// socket.io-parser RESERVED_EVENTS: names an EVENT may not carry.
constexpr std::string_view kReservedEvents[] = {
    "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
};

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_json_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// Accumulates a decimal digit, reporting overflow instead of wrapping.
bool add_digit(std::uint64_t& value, char digit) {
  const std::uint64_t d = static_cast<std::uint64_t>(digit - '0');
  if (value > (UINT64_MAX - d) / 10) return false;
  value = value * 10 + d;
  return true;
}

enum class Kind : std::uint8_t { None, Null, Boolean, Number, String, Array, Object };

// One SAX pass that validates JSON and gathers everything decode() needs: the root kind, the
// first element of a root array (with its string value, for the reserved-name check), the
// nesting depth, and optionally the placeholder rule of socket.io-parser's reconstructPacket.
// Static-dispatch SAX (nlohmann only needs the member functions), no DOM.
class PayloadScanner {
 public:
  PayloadScanner(std::size_t max_depth, bool check_placeholders, std::size_t attachments)
      : max_depth_(max_depth), check_placeholders_(check_placeholders), attachments_(attachments) {}

  Kind root = Kind::None;
  Kind first = Kind::None;  // first element of a root array
  std::string first_string;
  bool too_deep = false;
  bool placeholder_error = false;

  bool null() { return scalar(Kind::Null, false, false); }
  bool boolean(bool value) { return scalar(Kind::Boolean, value, false); }
  bool number_integer(Json::number_integer_t value) {
    return scalar(Kind::Number, false,
                  value >= 0 && static_cast<std::uint64_t>(value) < attachments_);
  }
  bool number_unsigned(Json::number_unsigned_t value) {
    return scalar(Kind::Number, false, value < attachments_);
  }
  bool number_float(Json::number_float_t value, const Json::string_t& /*text*/) {
    // JSON.parse turns 1.0 and 1e0 into the integer 1, a valid index; 0.5 is not one.
    const bool index = value >= 0 && std::floor(value) == value &&
                       value < static_cast<Json::number_float_t>(attachments_);
    return scalar(Kind::Number, false, index);
  }
  bool string(Json::string_t& value) {
    if (depth_ == 1 && root == Kind::Array && first == Kind::None) first_string = value;
    return scalar(Kind::String, false, false);
  }
  bool binary(Json::binary_t& /*value*/) { return false; }  // never produced by JSON input

  bool start_object(std::size_t /*elements*/) { return open(Kind::Object); }
  bool key(Json::string_t& name) {
    if (!frames_.empty()) {
      Frame& frame = frames_.back();
      frame.last_key = name == "_placeholder" ? Key::Placeholder
                       : name == "num"        ? Key::Num
                                              : Key::Other;
    }
    return true;
  }
  bool end_object() { return close(); }
  bool start_array(std::size_t /*elements*/) { return open(Kind::Array); }
  bool end_array() { return close(); }
  bool parse_error(std::size_t /*position*/, const std::string& /*token*/,
                   const Json::exception& /*error*/) {
    return false;
  }

 private:
  enum class Key : std::uint8_t { Other, Placeholder, Num };
  struct Frame {
    bool object = false;
    Key last_key = Key::Other;
    bool placeholder_true = false;  // last `_placeholder` value was `true` (JSON.parse: last wins)
    bool num_is_index = false;      // last `num` value is an attachment index
    bool error_inside = false;      // an invalid placeholder somewhere below
  };

  // Records a value at the current position. `is_true` / `is_index` describe it for the
  // placeholder rule.
  bool scalar(Kind kind, bool is_true, bool is_index) {
    note_value(kind);
    if (check_placeholders_ && !frames_.empty()) {
      Frame& frame = frames_.back();
      if (frame.object && frame.last_key == Key::Placeholder) frame.placeholder_true = is_true;
      if (frame.object && frame.last_key == Key::Num) frame.num_is_index = is_index;
    }
    return true;
  }

  void note_value(Kind kind) {
    if (depth_ == 0) {
      root = kind;
    } else if (depth_ == 1 && root == Kind::Array && first == Kind::None) {
      first = kind;
    }
  }

  bool open(Kind kind) {
    if (depth_ >= max_depth_) {
      too_deep = true;
      return false;
    }
    // A container as the value of `_placeholder` / `num` replaces an earlier valid one.
    scalar(kind, false, false);
    ++depth_;
    if (check_placeholders_) frames_.push_back(Frame{kind == Kind::Object});
    return true;
  }

  bool close() {
    --depth_;
    if (!check_placeholders_) return true;
    const Frame frame = frames_.back();
    frames_.pop_back();
    bool error = frame.error_inside;
    if (frame.object && frame.placeholder_true) {
      // The reference swaps the whole object for a buffer without looking inside it.
      error = !frame.num_is_index;
    }
    if (error) {
      if (frames_.empty()) {
        placeholder_error = true;
      } else {
        frames_.back().error_inside = true;
      }
    }
    return true;
  }

  std::size_t max_depth_;
  bool check_placeholders_;
  std::size_t attachments_;
  std::size_t depth_ = 0;
  std::vector<Frame> frames_;
};

bool payload_fits_type(Type type, const PayloadScanner& scan) {
  switch (type) {
    case Type::Connect:
      return scan.root == Kind::Object;
    case Type::Disconnect:
      return false;  // any payload at all is invalid
    case Type::Event:
    case Type::BinaryEvent:
      return scan.root == Kind::Array &&
             (scan.first == Kind::Number ||
              (scan.first == Kind::String && !is_reserved_event(scan.first_string)));
    case Type::Ack:
    case Type::BinaryAck:
      return scan.root == Kind::Array;
    case Type::ConnectError:
      return scan.root == Kind::Object || scan.root == Kind::String;
  }
  return false;
}

bool run_scanner(std::string_view json, PayloadScanner& scanner) {
  // nlohmann skips a leading UTF-8 byte order mark, JSON.parse does not: refuse it here so the
  // raw text handed on always starts with the JSON value itself.
  if (json.substr(0, 3) == "\xEF\xBB\xBF") return false;
  // nlohmann also takes a NUL byte for the end of input (for C strings), which would let
  // "[1]\0junk" through. A NUL is never valid in JSON text, raw or in a string.
  if (json.find('\0') != std::string_view::npos) return false;
  return Json::sax_parse(json.data(), json.data() + json.size(), &scanner,
                         Json::input_format_t::json, /*strict=*/true);
}

// End of the JSON value starting at `pos` (which is not whitespace), or npos when the text ends
// inside it. Structural scan only: strings and escapes are honoured, brackets are counted
// together, scalars run up to a delimiter.
std::size_t skip_value(std::string_view text, std::size_t pos) {
  const std::size_t n = text.size();
  if (pos >= n) return std::string_view::npos;
  const char c = text[pos];
  if (c == '"' || c == '[' || c == '{') {
    std::size_t depth = 0;
    bool in_string = false;
    for (std::size_t i = pos; i < n; ++i) {
      const char ch = text[i];
      if (in_string) {
        if (ch == '\\') {
          ++i;  // the escaped character can never end the string
        } else if (ch == '"') {
          in_string = false;
          if (depth == 0) return i + 1;
        }
      } else if (ch == '"') {
        in_string = true;
      } else if (ch == '[' || ch == '{') {
        ++depth;
      } else if (ch == ']' || ch == '}') {
        if (depth == 0) return std::string_view::npos;
        if (--depth == 0) return i + 1;
      }
    }
    return std::string_view::npos;
  }
  std::size_t i = pos;
  while (i < n && text[i] != ',' && text[i] != ']' && text[i] != '}' && text[i] != '"' &&
         text[i] != '[' && text[i] != '{' && !is_json_space(text[i])) {
    ++i;
  }
  return i == pos ? std::string_view::npos : i;
}

std::size_t skip_space(std::string_view text, std::size_t pos) {
  while (pos < text.size() && is_json_space(text[pos])) ++pos;
  return pos;
}

}  // namespace

bool is_reserved_event(std::string_view name) {
  for (std::string_view reserved : kReservedEvents) {
    if (name == reserved) return true;
  }
  return false;
}

const char* error_text(Error error) {
  switch (error) {
    case Error::None:
      return "ok";
    case Error::Empty:
      return "empty packet";
    case Error::UnknownType:
      return "unknown packet type";
    case Error::InvalidAttachments:
      return "illegal attachments";
    case Error::TooManyAttachments:
      return "too many attachments";
    case Error::InvalidAckId:
      return "invalid ack id";
    case Error::InvalidJson:
      return "invalid JSON";
    case Error::TooDeep:
      return "JSON nested too deeply";
    case Error::InvalidPayload:
      return "invalid payload";
    case Error::InvalidPlaceholder:
      return "illegal attachments";
  }
  return "unknown error";
}

Result<Packet> decode(std::string_view text, const DecodeLimits& limits) {
  Result<Packet> result;
  Packet& packet = result.value;
  const auto fail = [&result](Error error) {
    result.error = error;
    return result;
  };

  const std::size_t n = text.size();
  if (n == 0) return fail(Error::Empty);
  if (text[0] < '0' || text[0] > '6') return fail(Error::UnknownType);
  packet.type = static_cast<Type>(text[0] - '0');
  std::size_t i = 1;

  if (packet.type == Type::BinaryEvent || packet.type == Type::BinaryAck) {
    const std::size_t start = i;
    std::uint64_t count = 0;
    bool overflow = false;
    for (; i < n && is_digit(text[i]); ++i) overflow = overflow || !add_digit(count, text[i]);
    if (i == start || i == n || text[i] != '-') return fail(Error::InvalidAttachments);
    ++i;
    if (overflow || count > limits.max_attachments) return fail(Error::TooManyAttachments);
    if (count == 0) return fail(Error::InvalidAttachments);
    packet.attachments = static_cast<std::size_t>(count);
  }

  if (i < n && text[i] == '/') {
    const std::size_t comma = text.find(',', i);
    if (comma == std::string_view::npos) {
      packet.nsp.assign(text.substr(i));
      i = n;
    } else {
      packet.nsp.assign(text.substr(i, comma - i));
      i = comma + 1;
    }
  }

  if (i < n && is_digit(text[i])) {
    std::uint64_t id = 0;
    for (; i < n && is_digit(text[i]); ++i) {
      if (!add_digit(id, text[i])) return fail(Error::InvalidAckId);
    }
    packet.ack_id = id;
  }

  const std::string_view payload = text.substr(i);
  if (payload.empty()) {
    if (packet.type == Type::Connect || packet.type == Type::Disconnect) return result;
    return fail(Error::InvalidPayload);
  }
  if (packet.type == Type::Disconnect) return fail(Error::InvalidPayload);

  const bool binary = packet.type == Type::BinaryEvent || packet.type == Type::BinaryAck;
  PayloadScanner scanner(limits.max_depth, binary, packet.attachments);
  if (!run_scanner(payload, scanner)) {
    return fail(scanner.too_deep ? Error::TooDeep : Error::InvalidJson);
  }
  if (!payload_fits_type(packet.type, scanner)) return fail(Error::InvalidPayload);
  if (scanner.placeholder_error) return fail(Error::InvalidPlaceholder);
  packet.payload.assign(payload);
  return result;
}

std::string encode(const Packet& packet) {
  std::string out;
  out.reserve(packet.payload.size() + packet.nsp.size() + 24);
  out.push_back(static_cast<char>('0' + static_cast<int>(packet.type)));
  if (packet.type == Type::BinaryEvent || packet.type == Type::BinaryAck) {
    out.append(std::to_string(packet.attachments));
    out.push_back('-');
  }
  if (!packet.nsp.empty() && packet.nsp != "/") {
    out.append(packet.nsp);
    out.push_back(',');
  }
  if (packet.ack_id) out.append(std::to_string(*packet.ack_id));
  out.append(packet.payload);
  return out;
}

std::optional<std::vector<std::string_view>> split_array(std::string_view json_array) {
  std::vector<std::string_view> elements;
  std::size_t i = skip_space(json_array, 0);
  if (i >= json_array.size() || json_array[i] != '[') return std::nullopt;
  i = skip_space(json_array, i + 1);
  if (i < json_array.size() && json_array[i] == ']') {
    ++i;
  } else {
    while (true) {
      const std::size_t end = skip_value(json_array, i);
      if (end == std::string_view::npos) return std::nullopt;
      elements.push_back(json_array.substr(i, end - i));
      i = skip_space(json_array, end);
      if (i >= json_array.size()) return std::nullopt;
      if (json_array[i] == ']') {
        ++i;
        break;
      }
      if (json_array[i] != ',') return std::nullopt;
      i = skip_space(json_array, i + 1);
    }
  }
  if (skip_space(json_array, i) != json_array.size()) return std::nullopt;
  return elements;
}

std::string join_array(const std::vector<std::string_view>& elements) {
  std::size_t size = 2 + (elements.empty() ? 0 : elements.size() - 1);
  for (std::string_view element : elements) size += element.size();
  std::string out;
  out.reserve(size);
  out.push_back('[');
  for (std::size_t k = 0; k < elements.size(); ++k) {
    if (k != 0) out.push_back(',');
    out.append(elements[k]);
  }
  out.push_back(']');
  return out;
}

std::optional<std::string> event_name(std::string_view payload) {
  std::size_t i = skip_space(payload, 0);
  if (i >= payload.size() || payload[i] != '[') return std::nullopt;
  i = skip_space(payload, i + 1);
  const std::size_t end = skip_value(payload, i);
  if (end == std::string_view::npos) return std::nullopt;
  const std::string_view first = payload.substr(i, end - i);
  if (first.front() == '"') {
    // Unescapes through the parser so "\u0061" and "a" name the same event, as in JavaScript.
    const Json value = Json::parse(first.begin(), first.end(), nullptr, /*allow_exceptions=*/false);
    if (!value.is_string()) return std::nullopt;
    return value.get<std::string>();
  }
  if (first.front() == '-' || is_digit(first.front())) return std::string(first);
  return std::nullopt;
}

std::string placeholder(std::size_t index) {
  return "{\"_placeholder\":true,\"num\":" + std::to_string(index) + "}";
}

bool placeholders_valid(std::string_view payload, std::size_t attachments) {
  PayloadScanner scanner(SIZE_MAX, true, attachments);
  return run_scanner(payload, scanner) && !scanner.placeholder_error;
}

BinaryPacketBuilder::BinaryPacketBuilder(Packet packet, std::size_t max_total_bytes)
    : result_{std::move(packet), {}}, max_total_bytes_(max_total_bytes) {
  result_.attachments.reserve(result_.packet.attachments);
}

BinaryPacketBuilder::Status BinaryPacketBuilder::add(std::string bytes) {
  if (too_large_) return Status::TooLarge;
  if (complete()) return Status::Complete;
  if (bytes.size() > max_total_bytes_ - total_bytes_) {
    too_large_ = true;
    return Status::TooLarge;
  }
  total_bytes_ += bytes.size();
  result_.attachments.push_back(std::move(bytes));
  return complete() ? Status::Complete : Status::NeedMore;
}

}  // namespace steedos::protocol::sio
