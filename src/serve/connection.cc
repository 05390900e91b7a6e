#include "serve/connection.h"

#include <dirent.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdlib>

namespace kvarn::serve {
namespace {

// Numeric host and port of an address, as cpp-httplib formats remote_addr (getnameinfo).
bool Describe(const sockaddr_storage& a, socklen_t len, std::string* host, int* port) {
  char h[NI_MAXHOST], p[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&a), len, h, sizeof(h), p, sizeof(p),
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return false;
  *host = h;
  *port = std::atoi(p);
  return true;
}

}  // namespace

PeerWatch::PeerWatch(const std::string& local_addr, int local_port, const std::string& remote_addr,
                     int remote_port) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return;
  while (const dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    struct stat st;
    if (fstat(int(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage a{}, b{};
    socklen_t la = sizeof(a), lb = sizeof(b);
    if (getsockname(int(fd), reinterpret_cast<sockaddr*>(&a), &la) != 0 ||
        getpeername(int(fd), reinterpret_cast<sockaddr*>(&b), &lb) != 0)
      continue;  // not a connected socket (the listener, say)
    std::string lh, rh;
    int lp = 0, rp = 0;
    if (!Describe(a, la, &lh, &lp) || !Describe(b, lb, &rh, &rp)) continue;
    if (lp == local_port && rp == remote_port && rh == remote_addr &&
        (local_addr.empty() || lh == local_addr)) {
      fd_ = int(fd);
      break;
    }
  }
  closedir(dir);
}

bool PeerWatch::Closed() const {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLRDHUP, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

}  // namespace kvarn::serve
