#include "protocol/json_reader.hpp"

#include <string>
#include <utility>
#include <vector>

namespace steedos::protocol {

namespace {

/// nlohmann SAX events -> Json. Open containers live on a stack of frames that is reused from
/// one parse to the next, so a steady stream of packets allocates only what the result keeps.
class DomBuilder {
  static constexpr size_t kKeptFrames = 32;
  static constexpr size_t kKeptMembers = 64;

 public:
  using number_integer_t = Json::number_integer_t;
  using number_unsigned_t = Json::number_unsigned_t;
  using number_float_t = Json::number_float_t;
  using string_t = Json::string_t;
  using binary_t = Json::binary_t;

  void reset(size_t max_depth) {
    for (size_t i = 0; i < depth_; ++i) frames_[i].clear();
    depth_ = 0;
    max_depth_ = max_depth;
    too_deep_ = false;
    root_ = Json();
    // What is kept for the next parse stays small, whatever this document was.
    if (frames_.size() > kKeptFrames) {
      frames_.resize(kKeptFrames);
      frames_.shrink_to_fit();
    }
  }
  Json take() { return std::move(root_); }
  bool too_deep() const { return too_deep_; }

  // The SAX interface of Json::sax_parse.
  bool null() { return add(Json(nullptr)); }
  bool boolean(bool value) { return add(Json(value)); }
  bool number_integer(number_integer_t value) { return add(Json(value)); }
  bool number_unsigned(number_unsigned_t value) { return add(Json(value)); }
  bool number_float(number_float_t value, const string_t&) { return add(Json(value)); }
  bool string(string_t& value) { return add(Json(std::move(value))); }
  bool binary(binary_t&) { return false; }  // not in JSON text
  bool start_object(std::size_t) { return open(true); }
  bool key(string_t& key) {
    frames_[depth_ - 1].key = std::move(key);
    return true;
  }
  bool end_object() {
    Frame& frame = frames_[--depth_];
    Json object(Json::value_t::object);
    auto& map = object.get_ref<Json::object_t&>();
    map.reserve(frame.members.size());
    for (auto& [key, value] : frame.members) {
      auto existing = map.begin();
      while (existing != map.end() && existing->first != key) ++existing;
      if (existing != map.end()) {
        existing->second = std::move(value);  // a duplicate key: the last value wins
      } else {
        map.emplace_back(std::move(key), std::move(value));
      }
    }
    frame.clear();
    return add(std::move(object));
  }
  bool start_array(std::size_t) { return open(false); }
  bool end_array() {
    Frame& frame = frames_[--depth_];
    Json array = std::move(frame.array);
    frame.clear();
    return add(std::move(array));
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) {
    return false;
  }

 private:
  struct Frame {
    bool object = false;
    std::string key;                                    // objects: the member being read
    std::vector<std::pair<std::string, Json>> members;  // objects
    Json array;                                         // arrays: filled in place (Json moves)
    void clear() {
      key.clear();
      if (members.capacity() > kKeptMembers) {
        std::vector<std::pair<std::string, Json>>().swap(members);
      } else {
        members.clear();
      }
      array = Json();
    }
  };

  // False (which stops sax_parse) one level beyond max_depth_.
  bool open(bool object) {
    if (depth_ >= max_depth_) {
      too_deep_ = true;
      return false;
    }
    if (depth_ == frames_.size()) frames_.emplace_back();
    Frame& frame = frames_[depth_++];
    frame.object = object;
    if (!object) frame.array = Json(Json::value_t::array);
    return true;
  }

  bool add(Json&& value) {
    if (depth_ == 0) {
      root_ = std::move(value);
      return true;
    }
    Frame& frame = frames_[depth_ - 1];
    if (frame.object) {
      frame.members.emplace_back(std::move(frame.key), std::move(value));
    } else {
      frame.array.get_ref<Json::array_t&>().push_back(std::move(value));
    }
    return true;
  }

  std::vector<Frame> frames_;
  size_t depth_ = 0;
  size_t max_depth_ = 0;
  bool too_deep_ = false;
  Json root_;
};

}  // namespace

std::optional<Json> parse_json(std::string_view text, std::size_t max_depth, JsonRefusal* why) {
  thread_local DomBuilder builder;
  builder.reset(max_depth);
  const bool ok = Json::sax_parse(text.begin(), text.end(), &builder);
  std::optional<Json> result;
  if (ok) {
    result = builder.take();
  } else if (why != nullptr) {
    *why = builder.too_deep() ? JsonRefusal::TooDeep : JsonRefusal::Invalid;
  }
  builder.reset(max_depth);
  return result;
}

Json reserved_object(size_t members) {
  Json object(Json::value_t::object);
  object.get_ref<Json::object_t&>().reserve(members);
  return object;
}

}  // namespace steedos::protocol
