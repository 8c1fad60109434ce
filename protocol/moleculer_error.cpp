#include "protocol/moleculer_error.hpp"

namespace steedos::protocol {

Json MoleculerError::to_json() const {
  Json wire = Json::object();
  wire["name"] = name;
  wire["message"] = message;
  wire["nodeID"] = nodeID;
  wire["code"] = code;
  if (!type.empty()) wire["type"] = type;
  wire["retryable"] = retryable;
  if (!data.is_null()) wire["data"] = data;
  return wire;
}

namespace {
std::string string_or(const Json& object, const char* key, const std::string& fallback) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : fallback;
}
}  // namespace

MoleculerError MoleculerError::from_json(const Json& wire, const std::string& sender) {
  MoleculerError error;
  if (!wire.is_object()) {
    error.name = "MoleculerError";
    error.message = "Invalid error object in response";
    error.nodeID = sender;
    return error;
  }
  error.name = string_or(wire, "name", "Error");
  error.message = string_or(wire, "message", "");
  error.type = string_or(wire, "type", "");
  error.nodeID = string_or(wire, "nodeID", sender);
  if (error.nodeID.empty()) error.nodeID = sender;
  auto code = wire.find("code");
  error.code = code != wire.end() && code->is_number() ? code->get<int>() : 500;
  auto retryable = wire.find("retryable");
  // JS copies `retryable` verbatim: missing means not retryable.
  error.retryable = retryable != wire.end() && retryable->is_boolean() && retryable->get<bool>();
  auto data = wire.find("data");
  if (data != wire.end()) error.data = *data;
  return error;
}

namespace errors {
namespace {

MoleculerError make(const char* name, int code, const char* type, bool retryable,
                    std::string message, Json data) {
  MoleculerError error;
  error.name = name;
  error.code = code;
  error.type = type;
  error.retryable = retryable;
  error.message = std::move(message);
  error.data = std::move(data);
  return error;
}

std::string on_node(const std::string& node_id) {
  return node_id.empty() ? std::string() : " on '" + node_id + "' node";
}

Json action_data(const std::string& action, const std::string& node_id) {
  Json data = Json::object();
  data["action"] = action;
  if (!node_id.empty()) data["nodeID"] = node_id;
  return data;
}

}  // namespace

MoleculerError service_not_found(const std::string& action, const std::string& node_id) {
  return make("ServiceNotFoundError", 404, "SERVICE_NOT_FOUND", true,
              "Service '" + action + "' is not found" + on_node(node_id) + ".",
              action_data(action, node_id));
}

MoleculerError service_not_available(const std::string& action, const std::string& node_id) {
  return make("ServiceNotAvailableError", 404, "SERVICE_NOT_AVAILABLE", true,
              "Service '" + action + "' is not available" + on_node(node_id) + ".",
              action_data(action, node_id));
}

MoleculerError request_timeout(const std::string& action, const std::string& node_id) {
  return make("RequestTimeoutError", 504, "REQUEST_TIMEOUT", true,
              "Request is timed out when call '" + action + "' action on '" + node_id + "' node.",
              action_data(action, node_id));
}

MoleculerError request_rejected(const std::string& action, const std::string& node_id) {
  return make("RequestRejectedError", 503, "REQUEST_REJECTED", true,
              "Request is rejected when call '" + action + "' action on '" + node_id + "' node.",
              action_data(action, node_id));
}

MoleculerError request_skipped(const std::string& action, const std::string& node_id) {
  return make(
      "RequestSkippedError", 514, "REQUEST_SKIPPED", false,
      "Calling '" + action + "' is skipped because timeout reached on '" + node_id + "' node.",
      action_data(action, node_id));
}

MoleculerError queue_full(const std::string& action, const std::string& node_id, size_t size,
                          size_t limit) {
  Json data = action_data(action, node_id);
  data["size"] = size;
  data["limit"] = limit;
  return make(
      "QueueIsFullError", 429, "QUEUE_FULL", true,
      "Queue is full. Request '" + action + "' action on '" + node_id + "' node is rejected.",
      std::move(data));
}

MoleculerError broker_disconnected() {
  return make("BrokerDisconnectedError", 502, "BAD_GATEWAY", true,
              "The broker's transporter has disconnected. Please try again when a connection is "
              "reestablished.",
              nullptr);
}

MoleculerError validation(const std::string& message, Json data) {
  return make("ValidationError", 422, "VALIDATION_ERROR", false, message, std::move(data));
}

MoleculerError client_error(const std::string& message, int code, const std::string& type,
                            Json data) {
  MoleculerError error = make("MoleculerClientError", code, "", false, message, std::move(data));
  error.type = type;
  return error;
}

MoleculerError internal_error(const std::string& message) {
  return make("MoleculerError", 500, "INTERNAL_ERROR", false, message, nullptr);
}

MoleculerError server_error(const std::string& message, const std::string& type, Json data) {
  MoleculerError error = make("MoleculerServerError", 500, "", true, message, std::move(data));
  error.type = type;
  return error;
}

}  // namespace errors
}  // namespace steedos::protocol
