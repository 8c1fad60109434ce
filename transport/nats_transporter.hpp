#pragma once
// Transporter over cnats (the NATS C client), driven by the given io_context as cnats' external
// event loop: the loop reads and writes the socket, and messages reach on_message on the loop
// thread straight from the read, with no library thread in between. Connection state callbacks
// (disconnected, reconnected, closed) come from cnats' threads and are posted into the loop.
//
// Order: messages of one subscription arrive in order. Messages of several subscriptions that
// came in one socket read are handed over subscription by subscription, by drain rank, then in
// the order of the subscribe() calls.
//
// Threading: call the member functions from one thread, the loop's (tests may call them before
// the loop runs). The io_context must outlive the transporter. close() (also run by the
// destructor) blocks briefly until cnats has finished with its callbacks; after it returns no
// handler runs, not even one already posted.
#include <asio/io_context.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "transport/transporter.hpp"

namespace steedos::transport {

struct NatsOptions {
  /// One or more server URLs, comma separated: "nats://127.0.0.1:4222".
  std::string url = "nats://127.0.0.1:4222";
  std::string name = "steedos-socket";
  int connect_timeout_ms = 2000;
  /// -1 = reconnect forever (a gateway should outlive NATS restarts).
  int max_reconnect = -1;
  int reconnect_wait_ms = 500;
  /// Bytes buffered while reconnecting; above it publish() fails instead of growing.
  int reconnect_buffer_bytes = 8 * 1024 * 1024;
  /// Bytes published but not yet written to the socket; above it publish() fails instead of
  /// growing (the server stopped reading, or the loop is starved).
  size_t max_outgoing_bytes = 32 * 1024 * 1024;
  /// false = a lost connection is closed for good (on_closed) instead of retried.
  bool allow_reconnect = true;
  /// A PING every ping_interval_ms; with max_pings_out of them unanswered the connection counts
  /// as lost and is replaced by one to another server of the list. This is what notices a server
  /// that hangs without closing its socket.
  int ping_interval_ms = 5000;
  int max_pings_out = 2;
};

class NatsTransporter final : public Transporter {
 public:
  NatsTransporter(asio::io_context& loop, NatsOptions options);
  ~NatsTransporter() override;

  void connect(TransporterHandlers handlers) override;
  void subscribe(const std::string& subject, const std::string& queue = {},
                 int drain_rank = 0) override;
  void unsubscribe(const std::string& subject, const std::string& queue = {}) override;
  bool publish(const std::string& subject, std::string_view data) override;
  void flush(int timeout_ms) override;
  void close() override;
  bool connected() const override;
  std::string last_error() const override;
  std::string name() const override { return "NATS"; }
  /// Sent: publish() calls cnats accepted (buffered for the socket, or for the reconnect
  /// buffer while down); received: messages handed to on_message (not those cnats dropped for
  /// a subscription's pending limit or after an unsubscribe); bytes: their payloads;
  /// reconnects: cnats' reconnected callbacks. Never blocks: no cnats lock is taken, so a
  /// scrape during an outage does not wait for cnats' reconnect attempts. Figures stay after
  /// close().
  TransporterStats stats() const override;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace steedos::transport
