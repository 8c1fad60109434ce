#include "services/session_registry.hpp"

#include <cassert>

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
  token_->registry->close(*this);
}

std::optional<std::string_view> ClientSession::tenant_id() const {
  return text_of(token_->registry->ids(), tenant_);
}

std::optional<std::string_view> ClientSession::user_id() const {
  return text_of(token_->registry->ids(), user_);
}

rules::SessionView ClientSession::view() const {
  return rules::SessionView{copy(tenant_id()), copy(user_id()), anonymous()};
}

SessionRegistry::~SessionRegistry() {
  // A session outliving its registry would release into freed memory.
  assert(sessions_ == 0);
}

std::unique_ptr<ClientSession> SessionRegistry::open(std::optional<std::string_view> tenant_id,
                                                     std::optional<std::string_view> user_id,
                                                     std::string_view token,
                                                     TokenBucket room_requests) {
  auto [it, inserted] = tokens_.try_emplace(std::string(token));
  TokenRecord& record = it->second;
  if (inserted) record = TokenRecord{this, &it->first, 0};
  record.sessions++;
  sessions_++;
  const auto tenant = tenant_id ? ids_.acquire(*tenant_id) : InternedIds::kNone;
  const auto user = user_id ? ids_.acquire(*user_id) : InternedIds::kNone;
  return std::unique_ptr<ClientSession>(new ClientSession(record, tenant, user, room_requests));
}

const TokenRecord* SessionRegistry::find_token(std::string_view token) const {
  if (token.empty()) return nullptr;
  auto it = tokens_.find(std::string(token));
  return it == tokens_.end() ? nullptr : &it->second;
}

void SessionRegistry::close(ClientSession& session) {
  ids_.release(session.tenant_);
  ids_.release(session.user_);
  sessions_--;
  TokenRecord& record = *session.token_;
  if (--record.sessions == 0) tokens_.erase(tokens_.find(*record.token));
}

}  // namespace steedos::services
