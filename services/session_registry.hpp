#pragma once
// The `socket` service's per-socket session (gateway-contract.md §2.7: tenant, user id,
// anonymous) and what the sessions of one node share: one record per login (a token, as one user
// or as nobody, in one tenant), whose tenant and user ids are interned (services/interned_ids.hpp)
// and which heads the list of its connected sessions, so a logout finds exactly its token's
// sockets without visiting the others.
//
// Memory (issue 11, bench/results/memprofile-2026-12-05.md): a session is one 72-byte object in
// the gateway socket's slot (an 80-byte malloc chunk), instead of a make_shared ClientSession
// with two optional<string>s, a token copy and an optional<TokenBucket> (192 B), its std::any
// holder (16 B) and an entry of a token -> socket ids map holding a copy of each id (113 B).
// Not kept: no list and a scan of the node's sockets at logout (a 64-byte chunk instead of 80)
// visits every socket, 2.6-6.5 ms at 10,000 sockets on the event loop per logout (this shared
// 2-core VM); the list visits the token's own sockets only.
//
// Touched on connect, disconnect and logout only, never on delivery; not thread-safe (one
// owner, as InternedIds).
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/token_bucket.hpp"
#include "gateway/socket_data.hpp"
#include "services/interned_ids.hpp"
#include "services/steedos_rooms.hpp"

namespace steedos::services {

class SessionRegistry;
class ClientSession;

/// One login on this node: a token (empty without credentials) as one user (or anonymous) in
/// one tenant, held once however many sockets came with it (a user's tabs).
struct Login {
  struct Key {
    std::string token;
    InternedIds::Id tenant;
    InternedIds::Id user;  // kNone: anonymous
    bool operator<(const Key& other) const {
      if (token != other.token) return token < other.token;
      if (tenant != other.tenant) return tenant < other.tenant;
      return user < other.user;
    }
  };
  SessionRegistry* registry = nullptr;
  const Key* key = nullptr;  // the registry's key: map nodes do not move
  uint32_t sessions = 0;     // open sessions, connected or not
  // The connected ones, in the order they connected.
  ClientSession* first = nullptr;
  ClientSession* last = nullptr;
};

/// What the service keeps per socket, owned by the socket (ClientHub::set_session).
class ClientSession final : public gateway::SocketData {
 public:
  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;
  /// Leaves its login's list and releases the login.
  ~ClientSession() override;

  /// Not authenticated (no credentials, or the auth service did not vouch for them).
  bool anonymous() const { return login_->key->user == InternedIds::kNone; }
  std::optional<std::string_view> tenant_id() const;
  /// Set when authenticated.
  std::optional<std::string_view> user_id() const;
  /// The session as the room rules read it (a copy of the two ids, for a subscribe).
  rules::SessionView view() const;
  /// A fingerprint of the token it came with (FNV-1a 64, hex; "" without credentials): what a
  /// kept session remembers of it, to be found by a logout without holding the token.
  std::string token_fingerprint() const;
  /// gateway.maxSubscribesPerSecond for this socket's subscribe and unsubscribe requests.
  TokenBucket& room_requests() { return room_requests_; }

 private:
  friend class SessionRegistry;
  ClientSession(Login& login, TokenBucket room_requests)
      : login_(&login), room_requests_(room_requests) {}

  Login* login_;
  // The login's list of connected sessions; client_id_ is null while not in it.
  ClientSession* prev_ = nullptr;
  ClientSession* next_ = nullptr;
  const std::string* client_id_ = nullptr;  // the client's own id string (Client::id())
  TokenBucket room_requests_;
};

/// The fingerprint ClientSession::token_fingerprint gives for `token`.
std::string token_fingerprint(std::string_view token);

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
  /// Puts the session on its login's list once its client is connected. `client_id` must stay
  /// valid while the session lives (the client owns both).
  void connected(ClientSession& session, const std::string& client_id);
  /// The ids of the connected clients that came with `token`, in any tenant, vouched for or
  /// not (by login, then in the order they connected); none for the empty token (sockets
  /// without credentials are nobody's).
  std::vector<std::string> clients_of_token(std::string_view token) const;

  /// Open sessions.
  size_t size() const { return sessions_; }
  /// Logins with at least one open session.
  size_t login_count() const { return logins_.size(); }
  const InternedIds& ids() const { return ids_; }

 private:
  friend class ClientSession;
  void close(ClientSession& session);

  InternedIds ids_;
  // Ordered by token first: a token's logins (one per tenant and identity) are one range.
  std::map<Login::Key, Login> logins_;
  size_t sessions_ = 0;
};

}  // namespace steedos::services
