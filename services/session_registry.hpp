#pragma once
// The `socket` service's per-socket session (gateway-contract.md §2.7: tenant, user id,
// anonymous) and what the sessions of one node share: tenant and user ids interned
// (services/interned_ids.hpp) and one record per credentials token.
//
// Memory (issue 11, bench/results/memprofile-2026-12-05.md): a session is one 56-byte object in
// the gateway socket's slot (a 64-byte malloc chunk), instead of a make_shared ClientSession with
// two optional<string>s, a token copy and an optional<TokenBucket> (192 B), its std::any holder
// (16 B) and an entry of a token -> socket ids index with a copy of each id (113 B).
//
// Logout finds a token's sockets by its record: a node that has none of them stops at one hash
// lookup; a node that has some scans its sockets for the record (SocketService::logout). The
// record does not head a list of its sessions: two links and the socket id a list would need are
// 24 bytes per socket, for an event that is rare next to connects.
//
// Touched on connect and disconnect only, never on delivery; not thread-safe (one owner, as
// InternedIds).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/token_bucket.hpp"
#include "gateway/socket_data.hpp"
#include "services/interned_ids.hpp"
#include "services/steedos_rooms.hpp"

namespace steedos::services {

class SessionRegistry;

/// One credentials token on this node, held once however many sockets came with it (a user's
/// tabs). The record of the empty token is shared by the sockets that came without credentials.
struct TokenRecord {
  SessionRegistry* registry = nullptr;
  const std::string* token = nullptr;  // the registry's key: nodes do not move
  uint32_t sessions = 0;
};

/// What the service keeps per socket, owned by the socket (ClientHub::set_session).
class ClientSession final : public gateway::SocketData {
 public:
  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;
  /// Releases its ids and its token record.
  ~ClientSession() override;

  /// Not authenticated (no credentials, or the auth service did not vouch for them).
  bool anonymous() const { return user_ == InternedIds::kNone; }
  std::optional<std::string_view> tenant_id() const;
  /// Set when authenticated.
  std::optional<std::string_view> user_id() const;
  /// The session as the room rules read it (a copy of the two ids, for a subscribe).
  rules::SessionView view() const;
  /// True when the session came with `record`'s token.
  bool uses(const TokenRecord* record) const { return token_ == record; }
  /// gateway.maxSubscribesPerSecond for this socket's subscribe and unsubscribe requests.
  TokenBucket& room_requests() { return room_requests_; }

 private:
  friend class SessionRegistry;
  ClientSession(TokenRecord& token, InternedIds::Id tenant, InternedIds::Id user,
                TokenBucket room_requests)
      : token_(&token), tenant_(tenant), user_(user), room_requests_(room_requests) {}

  TokenRecord* token_;  // never null: the empty token's record without credentials
  InternedIds::Id tenant_;
  InternedIds::Id user_;  // kNone: anonymous
  TokenBucket room_requests_;
};

class SessionRegistry {
 public:
  SessionRegistry() = default;
  SessionRegistry(const SessionRegistry&) = delete;
  SessionRegistry& operator=(const SessionRegistry&) = delete;
  /// Every session must be gone first (they release into the registry).
  ~SessionRegistry();

  /// A session of `tenant_id` for `user_id` (nullopt: anonymous) that came with `token` (""
  /// without credentials).
  std::unique_ptr<ClientSession> open(std::optional<std::string_view> tenant_id,
                                      std::optional<std::string_view> user_id,
                                      std::string_view token, TokenBucket room_requests);
  /// The record of `token` while sessions of this node use it; nullptr otherwise, and always for
  /// the empty token (sockets without credentials are never a token's sockets).
  const TokenRecord* find_token(std::string_view token) const;
  /// Live sessions.
  size_t size() const { return sessions_; }
  /// Token records (the empty token's included while a socket without credentials is open).
  size_t token_count() const { return tokens_.size(); }
  const InternedIds& ids() const { return ids_; }

 private:
  friend class ClientSession;
  void close(ClientSession& session);

  InternedIds ids_;
  std::unordered_map<std::string, TokenRecord> tokens_;
  size_t sessions_ = 0;
};

}  // namespace steedos::services
