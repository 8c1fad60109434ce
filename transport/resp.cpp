#include "transport/resp.hpp"

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include <algorithm>
#include <climits>
#include <memory>
#include <new>
#include <stdexcept>
#include <utility>

namespace steedos::transport {

namespace {

/// The decoder whose reader is running, for the limits checked inside hiredis's callbacks
/// (hiredis 0.14 hands them no per-reader pointer of ours). Set only around
/// redisReaderGetReply, on the calling thread.
struct ReaderScope {
  size_t max_elements = 0;
  std::string refused;  // why a callback returned nullptr, when it was not out of memory
};
thread_local ReaderScope* current_scope = nullptr;

/// Hooks a new value into its parent array (hiredis builds depth first, so the parent's
/// element vector does not move while a child is being filled) or returns a new root.
void* place(const redisReadTask* task, RespReply&& value) noexcept {
  try {
    if (task->parent != nullptr) {
      auto* parent = static_cast<RespReply*>(task->parent->obj);
      parent->elements.push_back(std::move(value));
      return &parent->elements.back();
    }
    return new RespReply(std::move(value));
  } catch (...) {
    return nullptr;  // hiredis reports "Out of memory"
  }
}

void* create_string(const redisReadTask* task, char* str, size_t len) noexcept {
  RespReply r;
  switch (task->type) {
    case REDIS_REPLY_STATUS:
      r.type = RespReply::Type::status;
      break;
    case REDIS_REPLY_ERROR:
      r.type = RespReply::Type::error;
      break;
    default:
      r.type = RespReply::Type::string;
      break;
  }
  try {
    r.text.assign(str, len);
  } catch (...) {
    return nullptr;
  }
  return place(task, std::move(r));
}

void* create_array(const redisReadTask* task, int elements) noexcept {
  // Every element takes at least 4 bytes on the wire (":0\r\n"): a count beyond the byte limit
  // can never complete, and must not reserve memory.
  if (current_scope != nullptr && elements > 0 && size_t(elements) > current_scope->max_elements) {
    current_scope->refused =
        "array of " + std::to_string(elements) + " elements exceeds the reply size limit";
    return nullptr;
  }
  RespReply r;
  r.type = RespReply::Type::array;
  try {
    r.elements.reserve(size_t(elements > 0 ? std::min(elements, 1024) : 0));
  } catch (...) {
    return nullptr;
  }
  return place(task, std::move(r));
}

void* create_integer(const redisReadTask* task, long long value) noexcept {
  RespReply r;
  r.type = RespReply::Type::integer;
  r.integer = value;
  return place(task, std::move(r));
}

void* create_nil(const redisReadTask* task) noexcept {
  return place(task, RespReply{});
}

/// hiredis frees only roots (a finished reply it still holds, or a partial one on error);
/// children belong to their parent's vector.
void free_object(void* obj) noexcept {
  delete static_cast<RespReply*>(obj);
}

redisReplyObjectFunctions reply_functions = {create_string, create_array, create_integer,
                                             create_nil, free_object};

}  // namespace

std::string format_command(const std::vector<std::string_view>& args) {
  if (args.size() > size_t(INT_MAX)) throw std::length_error("RESP: too many arguments");
  std::vector<const char*> argv;
  std::vector<size_t> argvlen;
  argv.reserve(args.size());
  argvlen.reserve(args.size());
  for (const auto& a : args) {
    argv.push_back(a.data());
    argvlen.push_back(a.size());
  }
  char* raw = nullptr;
  const int len = redisFormatCommandArgv(&raw, int(args.size()), argv.data(), argvlen.data());
  if (len < 0 || raw == nullptr) throw std::length_error("RESP: command too large to format");
  std::unique_ptr<char, void (*)(char*)> owned(raw, redisFreeCommand);
  return std::string(raw, size_t(len));
}

RespDecoder::RespDecoder(size_t max_reply_bytes) : max_reply_bytes_(max_reply_bytes) {
  reader_ = redisReaderCreateWithFunctions(&reply_functions);
  if (reader_ == nullptr) throw std::bad_alloc();
  reader_->maxbuf = 64 * 1024;  // free an idle buffer above this (after a large reply)
}

RespDecoder::~RespDecoder() {
  redisReaderFree(reader_);
}

void RespDecoder::fail(std::string reason) {
  if (error_.empty()) error_ = std::move(reason);
}

void RespDecoder::feed(const char* data, size_t size) {
  if (failed() || size == 0) return;
  if (redisReaderFeed(reader_, data, size) != REDIS_OK) {
    fail(std::string("RESP: ") + reader_->errstr);
    return;
  }
  since_reply_ += size;
}

RespDecoder::Result RespDecoder::next(RespReply& out) {
  if (failed()) return Result::error;
  ReaderScope scope;
  scope.max_elements = max_reply_bytes_ / 4;
  current_scope = &scope;
  void* raw = nullptr;
  const int rc = redisReaderGetReply(reader_, &raw);
  current_scope = nullptr;
  if (rc != REDIS_OK) {
    if (!scope.refused.empty()) {
      fail("RESP: " + scope.refused);
    } else {
      fail(std::string("RESP protocol error: ") + reader_->errstr);
    }
    return Result::error;
  }
  if (raw == nullptr) {
    if (since_reply_ > max_reply_bytes_) {
      fail("RESP: a reply exceeds the size limit of " + std::to_string(max_reply_bytes_) +
           " bytes (" + std::to_string(since_reply_) + " bytes buffered)");
      return Result::error;
    }
    return Result::need_more;
  }
  std::unique_ptr<RespReply> reply(static_cast<RespReply*>(raw));
  const size_t rest = reader_->len - reader_->pos;  // the bytes of the next replies
  const size_t used = since_reply_ - rest;
  since_reply_ = rest;
  if (used > max_reply_bytes_) {
    fail("RESP: a reply of " + std::to_string(used) + " bytes exceeds the size limit of " +
         std::to_string(max_reply_bytes_) + " bytes");
    return Result::error;
  }
  out = std::move(*reply);
  return Result::reply;
}

}  // namespace steedos::transport
