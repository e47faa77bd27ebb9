#ifndef HOTRELOAD_DETAIL_LINUX_PROBE_HPP
#define HOTRELOAD_DETAIL_LINUX_PROBE_HPP

// The probe: every new library is first loaded in a throw-away process, so that a static
// initialiser that throws, crashes or hangs kills that process instead of the program.
//
// Forking the program for each load would cost a copy of its page tables every time (on this
// project's VM: 0.16 ms for an empty process, 1.1 ms at 20 MB, 3.9 ms at 100 MB of touched
// memory, with the program's memory map locked meanwhile). So a loader forks one small
// *probe server* when it is created, and each probe is a fork of that server: its cost stays
// what the program weighed at that moment. The server is single-threaded and makes system
// calls only (it is the child of a possibly multi-threaded program); the grandchild calls
// dlopen and exits. Each request carries the write end of a pipe on which the server answers
// how the grandchild ended, so callers wait for the answer on their own terms (the reloader
// asynchronously, on its executor).

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <hotreload/config.hpp>
#include <hotreload/detail/result.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

namespace hotreload::detail {

/// How a probe ended, as the server reports it.
struct probe_result {
  enum kind_t : std::int32_t { exited, signalled, timed_out, lost } kind = lost;
  std::int32_t value = 0; ///< exit status or signal number
};

/// What a probe result means for the library: empty if it may be loaded here (a dlopen
/// error is left for the real load to report), else an errc::load_failed error saying why
/// it is refused.
inline error_info probe_verdict(probe_result r, std::chrono::milliseconds limit) {
  std::string why;
  switch (r.kind) {
  case probe_result::exited: return {};
  case probe_result::timed_out:
    why = "loading it in a probe process did not finish within " + std::to_string(limit.count()) +
          " ms (a static initialiser hangs?); fix its static initialisers, or raise options.probe_timeout";
    break;
  case probe_result::signalled: {
    const char* name = ::sigabbrev_np(r.value);
    why = "loading it killed a probe process with SIG" + std::string(name ? name : "?") +
          (r.value == SIGABRT ? " (an exception escaped a static initialiser, or it called abort)" : "") +
          "; fix its static initialisers (this program was not affected)";
    break;
  }
  case probe_result::lost:
    why = "the probe process ended unexpectedly (killed from outside?); try again, or set "
          "options.probe_in_child = false";
    break;
  }
  return fail(errc::load_failed, {}, std::move(why));
}

class probe_server {
public:
  /// Forks the server. Null if that failed.
  static std::shared_ptr<probe_server> start() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return nullptr;
    pid_t pid = ::fork();
    if (pid < 0) {
      ::close(sv[0]);
      ::close(sv[1]);
      return nullptr;
    }
    if (pid == 0) serve(sv[1]);
    ::close(sv[1]);
    auto server = std::shared_ptr<probe_server>(new probe_server(pid, sv[0]));
    char ready = 0; // sent once it has shed what it inherited
    ssize_t n;
    do n = ::recv(sv[0], &ready, 1, 0);
    while (n < 0 && errno == EINTR);
    return n == 1 ? server : nullptr;
  }

  ~probe_server() {
    ::close(control_); // the server sees the hang-up, kills what it runs and exits
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }

  /// Asks for a probe of `image`; returns the read end of the pipe that will carry the
  /// probe_result, or -1 if the server is gone.
  int request(const std::filesystem::path& image, std::chrono::milliseconds limit) {
    request_msg req{};
    req.timeout_ms = static_cast<std::uint32_t>(std::clamp<long long>(limit.count(), 1, INT_MAX));
    const auto& s = image.native();
    if (s.size() >= sizeof req.path) return -1;
    std::memcpy(req.path, s.c_str(), s.size() + 1);
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return -1;
    iovec iov{&req, offsetof(request_msg, path) + s.size() + 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))]{};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    auto* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &p[1], sizeof(int));
    ssize_t n;
    do n = ::sendmsg(control_, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    ::close(p[1]);
    if (n < 0) {
      ::close(p[0]);
      return -1;
    }
    return p[0];
  }

  /// Reads the answer from `fd` (readable, or blocking) and closes it.
  static probe_result read_result(int fd) {
    probe_result r;
    ssize_t n;
    do n = ::read(fd, &r, sizeof r);
    while (n < 0 && errno == EINTR);
    ::close(fd);
    if (n != static_cast<ssize_t>(sizeof r)) r = {};
    return r;
  }

  /// Waits for the answer on `fd` without blocking the coroutine's executor, then closes it.
  static awaitable<probe_result> async_read_result(int fd) {
    asio::posix::stream_descriptor pipe(co_await asio::this_coro::executor, fd);
    auto [ec] = co_await pipe.async_wait(asio::posix::stream_descriptor::wait_read, asio::as_tuple(asio::use_awaitable));
    if (ec) co_return probe_result{}; // `pipe` closes the descriptor
    co_return read_result(pipe.release());
  }

  pid_t pid() const noexcept { return pid_; }

private:
  struct request_msg {
    std::uint32_t timeout_ms;
    char path[PATH_MAX];
  };

  // A probe at work.
  struct child {
    pid_t pid = -1;
    int pidfd = -1; // readable once it has ended (-1 without pidfd_open: polled)
    int fd = -1;    // where its answer goes
    std::int64_t deadline_ms = 0;
  };

  probe_server(pid_t pid, int control) : pid_(pid), control_(control) {}

  // The probes at work, in the server.
  struct jobs {
    static constexpr int max = 16;
    child at[max];
    int n = 0;
  };

  // The server: from here on, system calls only, and no return.
  [[noreturn]] static void serve(int control) noexcept {
    control = shed_inheritance(control);
    if (::send(control, "r", 1, MSG_NOSIGNAL) != 1) ::_exit(1);
    jobs running;
    for (;;) {
      pollfd fds[1 + jobs::max];
      fds[0] = {control, static_cast<short>(running.n < jobs::max ? POLLIN : 0), 0};
      std::int64_t now = now_ms(), wait = -1;
      for (int i = 0; i < running.n; ++i) {
        auto& job = running.at[i];
        fds[1 + i] = {job.pidfd, POLLIN, 0}; // without a pidfd (Linux < 5.3): look every ms
        std::int64_t left = job.pidfd < 0 ? 1 : job.deadline_ms - now;
        if (left < 0) left = 0;
        if (wait < 0 || left < wait) wait = left;
      }
      if (::poll(fds, nfds_t(1 + running.n), static_cast<int>(wait)) < 0 && errno != EINTR) ::_exit(1);
      reap(running, fds + 1);
      if (fds[0].revents & POLLIN) take_request(control, running);
      else if (fds[0].revents & (POLLHUP | POLLERR)) shut_down(running);
    }
  }

  // Nothing of the program's: its descriptors (sockets, pipes, locks; the control socket
  // becomes fd 3), its signal handlers and mask, its name. The control socket's number.
  static int shed_inheritance(int control) noexcept {
    if (control != 3) {
      ::dup2(control, 3);
      control = 3;
    }
    ::syscall(SYS_close_range, 4u, ~0u, 0u);
    struct sigaction sa{};
    sa.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; ++s)
      if (s != SIGKILL && s != SIGSTOP) ::sigaction(s, &sa, nullptr);
    sa.sa_handler = SIG_IGN; // a Ctrl-C at the terminal is for the program, not for us
    for (int s : {SIGINT, SIGQUIT, SIGHUP, SIGPIPE}) ::sigaction(s, &sa, nullptr);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::prctl(PR_SET_NAME, "hotreload-probe");
    return control;
  }

  static std::int64_t now_ms() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
  }

  static void answer(int fd, probe_result r) noexcept {
    (void)::write(fd, &r, sizeof r); // one write of 8 bytes: atomic on a pipe
    ::close(fd);
  }

  // Answers for the probes that ended (`ended[i]`: job i's poll result) or ran out of time.
  static void reap(jobs& running, const pollfd* ended) noexcept {
    auto now = now_ms();
    for (int i = running.n - 1; i >= 0; --i) { // from the end: finished jobs are replaced by the last
      auto& job = running.at[i];
      int status = 0;
      probe_result r;
      if ((ended[i].revents & POLLIN || job.pidfd < 0) && ::waitpid(job.pid, &status, WNOHANG) == job.pid) {
        r = WIFSIGNALED(status) ? probe_result{probe_result::signalled, WTERMSIG(status)}
                                : probe_result{probe_result::exited, WEXITSTATUS(status)};
      } else if (now >= job.deadline_ms) {
        ::kill(job.pid, SIGKILL);
        ::waitpid(job.pid, &status, 0);
        r = {probe_result::timed_out, 0};
      } else {
        continue;
      }
      answer(job.fd, r);
      if (job.pidfd >= 0) ::close(job.pidfd);
      job = running.at[--running.n];
    }
  }

  // One request: a probe (a fork that dlopens the path and exits) joins the running ones.
  static void take_request(int control, jobs& running) noexcept {
    request_msg req;
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
    iovec iov{&req, sizeof req};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    ssize_t got = ::recvmsg(control, &msg, MSG_CMSG_CLOEXEC);
    if (got == 0) shut_down(running);
    int reply = -1;
    if (auto* c = CMSG_FIRSTHDR(&msg); c && c->cmsg_type == SCM_RIGHTS) std::memcpy(&reply, CMSG_DATA(c), sizeof(int));
    auto len = got - static_cast<ssize_t>(offsetof(request_msg, path));
    if (len < 1 || reply < 0 || req.path[len - 1] != '\0') {
      if (reply >= 0) ::close(reply);
      return;
    }
    pid_t pid = ::fork();
    if (pid == 0) {
      ::syscall(SYS_close_range, 3u, ~0u, 0u);
      void* handle = ::dlopen(req.path, RTLD_NOW | RTLD_LOCAL);
      ::_exit(handle ? 0 : 1); // no destructors, no atexit handlers, no stdio flush
    }
    if (pid < 0) return answer(reply, probe_result{});
    running.at[running.n++] = {pid, static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)), reply, now_ms() + req.timeout_ms};
  }

  [[noreturn]] static void shut_down(const jobs& running) noexcept {
    for (int i = 0; i < running.n; ++i) {
      ::kill(running.at[i].pid, SIGKILL);
      ::waitpid(running.at[i].pid, nullptr, 0);
    }
    ::_exit(0);
  }

  pid_t pid_;
  int control_;
};

} // namespace hotreload::detail

#endif
