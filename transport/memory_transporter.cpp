#include "transport/memory_transporter.hpp"

#include <algorithm>
#include <asio/post.hpp>
#include <map>
#include <utility>

namespace steedos::transport {

struct MemoryBus::Subscriber {
  std::string pattern;
  std::string queue;
  /// Cleared by the owning transporter on unsubscribe/close; `owner_connected` and `receive`
  /// point into the owner and are used only while this is true.
  bool active = true;
  const bool* owner_connected = nullptr;
  std::function<void(const std::string& subject, std::string_view data)> receive;

  bool accepting() const { return active && *owner_connected; }
};

namespace {

std::vector<std::string_view> tokens(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    const size_t dot = s.find('.', start);
    if (dot == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, dot - start));
    start = dot + 1;
  }
}

}  // namespace

bool nats_subject_matches(const std::string& pattern, const std::string& subject) {
  const auto p = tokens(pattern);
  const auto s = tokens(subject);
  // Empty tokens ("", "a..b", ".a", "a.") make an invalid subject in NATS: nothing matches.
  const auto has_empty = [](const std::vector<std::string_view>& t) {
    return std::any_of(t.begin(), t.end(), [](std::string_view x) { return x.empty(); });
  };
  if (has_empty(p) || has_empty(s)) return false;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == ">") return i + 1 == p.size() && i < s.size();  // `>` only as the last token
    if (i >= s.size()) return false;
    if (p[i] != "*" && p[i] != s[i]) return false;
  }
  return p.size() == s.size();
}

void MemoryBus::add(std::shared_ptr<Subscriber> subscriber) {
  subscribers_.push_back(std::move(subscriber));
}

void MemoryBus::remove(const Subscriber* subscriber) {
  subscribers_.erase(std::remove_if(subscribers_.begin(), subscribers_.end(),
                                    [subscriber](const std::shared_ptr<Subscriber>& s) {
                                      return s.get() == subscriber;
                                    }),
                     subscribers_.end());
}

void MemoryBus::deliver(const std::string& subject, const std::string& data) {
  // Recipients are chosen now (as the server would at publish time); each delivery is posted.
  std::vector<std::shared_ptr<Subscriber>> targets;
  std::map<std::string, std::vector<std::shared_ptr<Subscriber>>> groups;
  for (const auto& s : subscribers_) {
    if (!s->accepting() || !nats_subject_matches(s->pattern, subject)) continue;
    if (s->queue.empty()) {
      targets.push_back(s);
    } else {
      groups[s->queue].push_back(s);
    }
  }
  for (const auto& [queue, members] : groups) {
    targets.push_back(members[queue_cursor_++ % members.size()]);
  }
  if (targets.empty()) return;

  auto shared_subject = std::make_shared<const std::string>(subject);
  auto shared_data = std::make_shared<const std::string>(data);
  for (auto& target : targets) {
    asio::post(loop_, [target, shared_subject, shared_data] {
      // Dropped if the receiver unsubscribed, closed or went offline in the meantime.
      if (target->accepting() && target->receive) target->receive(*shared_subject, *shared_data);
    });
  }
}

MemoryTransporter::~MemoryTransporter() {
  close();
}

void MemoryTransporter::connect(TransporterHandlers handlers) {
  handlers_ = std::move(handlers);
  if (!*alive_) alive_ = std::make_shared<bool>(true);  // connect again after close()
  connected_ = true;
}

void MemoryTransporter::subscribe(const std::string& subject, const std::string& queue, int) {
  for (const auto& s : subscriptions_) {
    if (s->pattern == subject && s->queue == queue) return;
  }
  auto sub = std::make_shared<MemoryBus::Subscriber>();
  sub->pattern = subject;
  sub->queue = queue;
  sub->owner_connected = &connected_;
  sub->receive = [this](const std::string& subj, std::string_view data) {
    counts_.messages_received++;
    counts_.bytes_received += data.size();
    if (handlers_.on_message) handlers_.on_message(subj, data);
  };
  subscriptions_.push_back(sub);
  bus_.add(std::move(sub));
}

void MemoryTransporter::unsubscribe(const std::string& subject, const std::string& queue) {
  auto it = std::find_if(subscriptions_.begin(), subscriptions_.end(),
                         [&](const std::shared_ptr<MemoryBus::Subscriber>& s) {
                           return s->pattern == subject && s->queue == queue;
                         });
  if (it == subscriptions_.end()) return;
  (*it)->active = false;
  bus_.remove(it->get());
  subscriptions_.erase(it);
}

bool MemoryTransporter::publish(const std::string& subject, std::string_view data) {
  if (!connected_) return false;
  counts_.messages_sent++;
  counts_.bytes_sent += data.size();
  bus_.published.emplace_back(subject, std::string(data));
  bus_.deliver(subject, bus_.published.back().second);
  return true;
}

void MemoryTransporter::close() {
  *alive_ = false;
  connected_ = false;
  for (auto& sub : subscriptions_) {
    sub->active = false;
    bus_.remove(sub.get());
  }
  subscriptions_.clear();
}

void MemoryTransporter::simulate_disconnect() {
  connected_ = false;
  asio::post(bus_.loop(), [this, alive = alive_] {
    if (*alive && handlers_.on_disconnected) handlers_.on_disconnected();
  });
}

TransporterStats MemoryTransporter::stats() const {
  TransporterStats stats = counts_;
  stats.connected = connected_;
  return stats;
}

void MemoryTransporter::simulate_reconnect() {
  connected_ = true;
  counts_.reconnects++;
  asio::post(bus_.loop(), [this, alive = alive_] {
    if (*alive && handlers_.on_reconnected) handlers_.on_reconnected();
  });
}

}  // namespace steedos::transport
