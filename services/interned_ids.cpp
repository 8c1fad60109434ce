#include "services/interned_ids.hpp"

namespace steedos::services {

InternedIds::Id InternedIds::acquire(std::string_view text) {
  // A temporary key: C++17's unordered_map has no lookup by string_view. Connect time only.
  auto [it, inserted] = index_.try_emplace(std::string(text), kNone);
  if (inserted) {
    if (free_.empty()) {
      entries_.emplace_back();
      it->second = static_cast<Id>(entries_.size());
    } else {
      it->second = free_.back();
      free_.pop_back();
    }
    entries_[it->second - 1] = Entry{&it->first, 0};
  }
  entries_[it->second - 1].holders++;
  return it->second;
}

void InternedIds::release(Id id) {
  if (id == kNone || id > entries_.size()) return;
  Entry& entry = entries_[id - 1];
  if (entry.holders == 0) return;
  if (--entry.holders > 0) return;
  index_.erase(index_.find(*entry.text));
  entry = Entry{};
  free_.push_back(id);
}

std::string_view InternedIds::text(Id id) const {
  if (id == kNone || id > entries_.size() || entries_[id - 1].text == nullptr) return {};
  return *entries_[id - 1].text;
}

uint32_t InternedIds::holders(Id id) const {
  if (id == kNone || id > entries_.size()) return 0;
  return entries_[id - 1].holders;
}

InternedIds::Id InternedIds::find(std::string_view text) const {
  auto it = index_.find(std::string(text));
  return it == index_.end() ? kNone : it->second;
}

}  // namespace steedos::services
