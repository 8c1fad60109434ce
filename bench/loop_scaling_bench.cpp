// loop-scaling-bench: how much a second writing thread takes off "one small frame to N loopback
// sockets" on this machine, the kernel's floor for gateway.ioThreads (issue 11). No gateway code:
// the server side is N accepted sockets written with plain send(), the client side a forked
// process that drains them with epoll and reports when every byte of a round has arrived.
//
//   build/loop-scaling-bench [--sockets 10000] [--rounds 20] [--bytes 60]
//
// For 1 and then 2 writing threads (each owning a contiguous half of the sockets), per round:
// the time until every send() returned (the server's write time) and until the receiver had
// every byte (CLOCK_MONOTONIC, shared by both processes). Prints the medians and the 2/1 ratio.
// The receiver shares the machine's cores with the writers, as a load generator on the same host
// does. Needs 2 * N + a few descriptors in all (N per process).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Options {
  int sockets = 10000;
  int rounds = 20;
  int bytes = 60;
};

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

[[noreturn]] void fail(const char* what) {
  std::perror(what);
  std::exit(1);
}

Options parse_options(int argc, char** argv) {
  Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string name = argv[i];
    const int value = std::atoi(argv[i + 1]);
    if (name == "--sockets") {
      options.sockets = value;
    } else if (name == "--rounds") {
      options.rounds = value;
    } else if (name == "--bytes") {
      options.bytes = value;
    } else {
      std::fprintf(stderr, "usage: loop-scaling-bench [--sockets N] [--rounds R] [--bytes B]\n");
      std::exit(2);
    }
  }
  if (options.sockets < 2 || options.rounds < 1 || options.bytes < 1) {
    std::fprintf(stderr, "loop-scaling-bench: --sockets >= 2, --rounds >= 1, --bytes >= 1\n");
    std::exit(2);
  }
  return options;
}

// The client process: connects every socket, says "ready", then for each round drains until it
// has sockets * bytes bytes and writes the CLOCK_MONOTONIC time of that read to `report`.
[[noreturn]] void run_receiver(const sockaddr_in& address, const Options& options, int report,
                               int total_rounds) {
  const int epoll = epoll_create1(0);
  for (int i = 0; i < options.sockets; i++) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) fail("receiver socket");
    if (connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
      fail("receiver connect");
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = fd;
    epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event);
  }
  const char ready = 'r';
  if (write(report, &ready, 1) != 1) fail("receiver ready");
  const long long per_round = static_cast<long long>(options.sockets) * options.bytes;
  std::vector<char> buffer(65536);
  std::vector<epoll_event> events(1024);
  for (int round = 0; round < total_rounds; round++) {
    long long received = 0;
    while (received < per_round) {
      const int ready_count =
          epoll_wait(epoll, events.data(), static_cast<int>(events.size()), 5000);
      if (ready_count <= 0) {
        std::fprintf(stderr, "receiver stalled at %lld of %lld bytes\n", received, per_round);
        _exit(1);
      }
      for (int i = 0; i < ready_count; i++) {
        ssize_t n;
        while ((n = read(events[i].data.fd, buffer.data(), buffer.size())) > 0) received += n;
      }
    }
    const double done = now_ms();
    if (write(report, &done, sizeof done) != sizeof done) fail("receiver report");
  }
  _exit(0);
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      listen(listener, 4096) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    fail("listen");
  }
  int channel[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, channel) != 0) fail("socketpair");
  const int thread_counts[] = {1, 2};
  const int total_rounds = options.rounds * 2;
  const pid_t receiver = fork();
  if (receiver == 0) run_receiver(address, options, channel[1], total_rounds);

  std::vector<int> sockets;
  for (int i = 0; i < options.sockets; i++) {
    const int fd = accept(listener, nullptr, nullptr);
    if (fd < 0) fail("accept");
    fcntl(fd, F_SETFL, O_NONBLOCK);
    sockets.push_back(fd);
  }
  char ready;
  if (read(channel[0], &ready, 1) != 1) fail("receiver did not start");

  const std::vector<char> payload(options.bytes, 'x');
  auto write_range = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; i++) {
      if (send(sockets[i], payload.data(), payload.size(), MSG_NOSIGNAL) !=
          static_cast<ssize_t>(payload.size())) {
        fail("send");  // 60 bytes into an empty socket buffer: never partial here
      }
    }
  };
  double write_medians[2];
  for (int t = 0; t < 2; t++) {
    std::vector<double> write_ms;
    std::vector<double> receipt_ms;
    for (int round = 0; round < options.rounds; round++) {
      // Let the previous round's wake-ups settle so each round starts from an idle receiver.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const double start = now_ms();
      if (thread_counts[t] == 1) {
        write_range(0, sockets.size());
      } else {
        std::thread second([&] { write_range(sockets.size() / 2, sockets.size()); });
        write_range(0, sockets.size() / 2);
        second.join();
      }
      const double written = now_ms();
      double received;
      if (read(channel[0], &received, sizeof received) != sizeof received) fail("receipt");
      write_ms.push_back(written - start);
      receipt_ms.push_back(received - start);
    }
    write_medians[t] = median(write_ms);
    std::printf("RESULT threads=%d sockets=%d bytes=%d write_ms=%.2f receipt_ms=%.2f\n",
                thread_counts[t], options.sockets, options.bytes, write_medians[t],
                median(receipt_ms));
  }
  std::printf("RESULT write_ratio_2_over_1=%.2f\n", write_medians[1] / write_medians[0]);
  waitpid(receiver, nullptr, 0);
  return 0;
}
