#include "services/session_registry.hpp"

#include <cassert>
#include <cstdio>

namespace steedos::services {

namespace {

std::optional<std::string_view> text_of(const InternedIds& ids, InternedIds::Id id) {
  if (id == InternedIds::kNone) return std::nullopt;
  return ids.text(id);
}

std::optional<std::string> copy(std::optional<std::string_view> text) {
  return text ? std::optional<std::string>(std::string(*text)) : std::nullopt;
}

}  // namespace

ClientSession::~ClientSession() {
  login_->registry->close(*this);
}

std::optional<std::string_view> ClientSession::tenant_id() const {
  return text_of(login_->registry->ids(), login_->key->tenant);
}

std::optional<std::string_view> ClientSession::user_id() const {
  return text_of(login_->registry->ids(), login_->key->user);
}

rules::SessionView ClientSession::view() const {
  return rules::SessionView{copy(tenant_id()), copy(user_id()), anonymous()};
}

std::string ClientSession::token_fingerprint() const {
  return services::token_fingerprint(login_->key->token);
}

std::string token_fingerprint(std::string_view token) {
  if (token.empty()) return {};
  uint64_t hash = 14695981039346656037ull;  // FNV-1a 64: offset basis, then the prime
  for (unsigned char c : token) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

SessionRegistry::~SessionRegistry() {
  // A session outliving its registry would release into freed memory.
  assert(sessions_ == 0);
}

std::unique_ptr<ClientSession> SessionRegistry::open(std::optional<std::string_view> tenant_id,
                                                     std::optional<std::string_view> user_id,
                                                     std::string_view token,
                                                     TokenBucket room_requests) {
  const auto tenant = tenant_id ? ids_.acquire(*tenant_id) : InternedIds::kNone;
  const auto user = user_id ? ids_.acquire(*user_id) : InternedIds::kNone;
  auto [it, inserted] = logins_.try_emplace(Login::Key{std::string(token), tenant, user});
  Login& login = it->second;
  if (inserted) {
    login.registry = this;
    login.key = &it->first;
  } else {
    // The login holds the ids once for all its sessions.
    ids_.release(tenant);
    ids_.release(user);
  }
  login.sessions++;
  sessions_++;
  return std::unique_ptr<ClientSession>(new ClientSession(login, room_requests));
}

void SessionRegistry::connected(ClientSession& session, const std::string& client_id) {
  if (session.client_id_ != nullptr) return;
  Login& login = *session.login_;
  session.client_id_ = &client_id;
  session.prev_ = login.last;
  session.next_ = nullptr;
  if (login.last != nullptr) {
    login.last->next_ = &session;
  } else {
    login.first = &session;
  }
  login.last = &session;
}

std::vector<std::string> SessionRegistry::clients_of_token(std::string_view token) const {
  std::vector<std::string> ids;
  if (token.empty()) return ids;
  const std::string key(token);
  for (auto it = logins_.lower_bound(Login::Key{key, InternedIds::kNone, InternedIds::kNone});
       it != logins_.end() && it->first.token == key; ++it) {
    for (const ClientSession* s = it->second.first; s != nullptr; s = s->next_) {
      ids.push_back(*s->client_id_);
    }
  }
  return ids;
}

void SessionRegistry::close(ClientSession& session) {
  Login& login = *session.login_;
  if (session.client_id_ != nullptr) {
    (session.prev_ != nullptr ? session.prev_->next_ : login.first) = session.next_;
    (session.next_ != nullptr ? session.next_->prev_ : login.last) = session.prev_;
  }
  sessions_--;
  if (--login.sessions > 0) return;
  ids_.release(login.key->tenant);
  ids_.release(login.key->user);
  logins_.erase(logins_.find(*login.key));
}

}  // namespace steedos::services
