#pragma once
// Moleculer errors as they travel in RES packets (spec: moleculer-node.md §5.2). The C++ node
// always sends name, message, code, type, data, retryable and nodeID, because JS copies
// `retryable` verbatim and rebuilds the message of typed errors from `data`.
#include <stdexcept>
#include <string>

#include "protocol/json.hpp"

namespace steedos::protocol {

struct MoleculerError {
  std::string name = "MoleculerError";
  std::string message;
  int code = 500;
  std::string type;  // empty = not sent as a string (JSON null is never sent; the key is omitted)
  Json data;         // null = omitted
  bool retryable = false;
  std::string nodeID;

  /// The wire object of RES `error`.
  Json to_json() const;
  /// Rebuilds an error from a RES `error` object; missing fields keep safe defaults and
  /// `nodeID` falls back to `sender`.
  static MoleculerError from_json(const Json& wire, const std::string& sender);
};

/// Thrown by action handlers that want to answer a typed error.
class MoleculerException : public std::runtime_error {
 public:
  explicit MoleculerException(MoleculerError error)
      : std::runtime_error(error.message), error_(std::move(error)) {}
  const MoleculerError& error() const noexcept { return error_; }

 private:
  MoleculerError error_;
};

namespace errors {
// Each mirrors the JS class of the same name: code, type, retryable, message template, data.
// `node_id` is the node the error is about (empty: the message leaves "on '<node>' node" out).
MoleculerError service_not_found(const std::string& action, const std::string& node_id);
MoleculerError service_not_available(const std::string& action, const std::string& node_id);
MoleculerError request_timeout(const std::string& action, const std::string& node_id);
MoleculerError request_rejected(const std::string& action, const std::string& node_id);
MoleculerError request_skipped(const std::string& action, const std::string& node_id);
MoleculerError queue_full(const std::string& action, const std::string& node_id, size_t size,
                          size_t limit);
MoleculerError broker_disconnected();
MoleculerError validation(const std::string& message, Json data);
MoleculerError client_error(const std::string& message, int code, const std::string& type,
                            Json data = nullptr);
/// A handler failure that is not the caller's fault (a C++ exception): MoleculerError, 500.
MoleculerError internal_error(const std::string& message);
MoleculerError server_error(const std::string& message, const std::string& type = "",
                            Json data = nullptr);
}  // namespace errors

}  // namespace steedos::protocol
