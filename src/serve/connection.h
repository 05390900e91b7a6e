// PeerWatch: tells whether the client of an HTTP request has gone, so a request whose client
// disconnected is cancelled (and its KV pages freed) at the scheduler's next step instead of
// when its generation would have ended.
//
// cpp-httplib 0.11 (Debian 12) does not hand a handler its socket, so the watch finds it: the
// one socket of this process whose local and peer address and port are the request's
// (/proc/self/fd, getsockname, getpeername). The socket stays open, and so the descriptor stays
// this connection's, for as long as the handler (or its content provider) runs.
#pragma once

#include <string>

namespace kvarn::serve {

class PeerWatch {
 public:
  PeerWatch() = default;
  PeerWatch(const std::string& local_addr, int local_port, const std::string& remote_addr,
            int remote_port);
  bool found() const { return fd_ >= 0; }
  // True once the peer has closed or reset the connection (poll: POLLRDHUP, POLLHUP, POLLERR).
  bool Closed() const;

 private:
  int fd_ = -1;
};

}  // namespace kvarn::serve
