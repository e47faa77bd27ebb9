#ifndef HOTRELOAD_DETAIL_LINUX_PROBE_HPP
#define HOTRELOAD_DETAIL_LINUX_PROBE_HPP

// The probe: every new library is first loaded in another process, so that a static
// initialiser that throws, crashes, hangs or calls exit ends that process instead of the
// program.
//
// Forking the program for each load would cost a copy of its page tables every time (on this
// project's VM: 0.16 ms for an empty process, 1.1 ms at 20 MB, 3.9 ms at 100 MB of touched
// memory, with the program's memory map locked meanwhile). So a loader forks one small
// *probe server* when it is created. The server is single-threaded and, once it has made
// sure no lock its workers need was inherited held (take_inherited_locks), makes system
// calls only (it is the child of a possibly multi-threaded program). It forks *workers*: a worker
// takes one request at a time, dlopens the library, writes the answer, then dlcloses it and
// checks that it is as it was (the library unmapped, one thread, the same descriptors, and
// no more than `max_growth` more memory resident: what static initialisers leak stays in
// the worker). A worker that is not, or that has served `reuse` probes, exits; one that
// dies, or takes longer than the request's limit, is replaced (killed). With `reuse` 1 every
// probe has a fresh process. Each request carries the write end of a pipe, on which the
// worker answers (or the server, for a worker that ended or ran out of time), so callers
// wait for the answer on their own terms (the reloader asynchronously, on its executor).
//
// An idle worker takes the program's next request itself, from the program's socket (a
// message goes to one reader), and then tells the server, which times it: one hand-off
// between processes fewer on every probe than through the server (p50 15-90 us lower,
// benchmarks/README.md). The server reads that socket only while no worker is idle, and gives
// what it reads to a worker it forks for it.
//
// A worker keeps the libraries a probed library brought with it (its dependencies that the
// program had not loaded) between probes: loading and unloading them for every probe cost
// a plugin linked to libssl, libcrypto and libz, which the program lacked, 0.70-0.75 ms a
// probe, against 0.29-0.35 ms once kept. A probe must still run every static initialiser
// the program's own load will run: a worker whose kept library was replaced on disk since
// it loaded it takes no more probes (the server hands the request to a fresh worker). A
// request names the library's direct dependencies, which the worker loads each by itself
// first, as the program's load does (dependencies_first): loaded with the library, a C++
// dependency may bind its STB_GNU_UNIQUE symbols to the library's copies, and then neither
// unloads (a worker per probe: 3.3 ms for a plugin linking libboost_json, which the program
// lacked, against 0.37 ms in one that links it).
//
// A worker yields its core once it has answered, before it unloads the library. A write to a
// pipe is a *synchronous* wake-up for the kernel's scheduler, which expects the writer to sleep
// next and may queue the woken program on the writer's core, behind it: where the scheduler
// sees no cache shared between cores (this project's VM shows none), it does so even with the
// other core idle, and the program then waited for the unloading, 126-160 us at p50 in a loop
// of probes of the benchmark plugin, against 14-17 us with the yield. (The request's own
// wake-up has the same shape: the program copies the library after sending it. A doorbell
// with a wake-up that is not synchronous, an eventfd, was tried for it and changed nothing on
// that VM: the idle worker last ran on the program's core, and is woken there.)
//
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
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
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <dlfcn.h>
#include <link.h>
#include <stdlib.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

namespace hotreload::detail {

/// How a probe ended.
struct probe_result {
  enum kind_t : std::int32_t {
    loaded,    ///< the worker answered: value 0 if dlopen succeeded, 1 if it failed
    exited,    ///< the worker exited while loading, with exit status `value`
    signalled, ///< the worker was killed while loading, by signal `value`
    timed_out, ///< loading took longer than the limit; the worker was killed
    lost,      ///< no answer (the server is gone)
    unanswered ///< no answer within answer_limit (the server is stopped or stuck): said here, not by the server
  } kind = lost;
  std::int32_t value = 0;
  std::int32_t worker = 0; ///< the process that loaded it (for tests and tools)
};

/// How long the program waits for a probe's answer before it ends the probe server: the
/// server answers by `probe_timeout` (it kills a worker that takes longer), so only a server
/// that is stopped or stuck stays silent past twice that and a second.
inline std::chrono::milliseconds answer_limit(std::chrono::milliseconds probe_timeout) {
  return 2 * probe_timeout + std::chrono::seconds(1);
}

/// What a probe result means for the library: empty if it may be loaded here (a dlopen
/// error is left for the real load to report), else an errc::load_failed error saying why
/// it is refused.
inline error_info probe_verdict(probe_result r, std::chrono::milliseconds limit) {
  std::string why;
  switch (r.kind) {
  case probe_result::loaded: return {};
  case probe_result::exited:
    why = "loading it ended a probe process with exit status " + std::to_string(r.value) +
          (r.value == 127 ? " (the dynamic linker's, when a static initialiser calls a function that no loaded "
                            "library defines: its \"symbol lookup error\" on standard error names it; or the "
                            "library's own exit(127)); link it against the libraries that define its functions, "
                            "or fix its static initialisers"
                          : " (a static initialiser calls exit or quick_exit); fix its static initialisers") +
          " (this program was not affected)";
    break;
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
  case probe_result::unanswered:
    why = "the probe process did not answer within " + std::to_string(answer_limit(limit).count()) +
          " ms (stopped, or stuck: its worker is killed at options.probe_timeout); it was ended, and the next load "
          "starts a new one; try again, or set options.probe_in_child = false";
    break;
  }
  return fail(errc::load_failed, {}, std::move(why));
}

class probe_server {
public:
  /// Forks the server; each of its workers loads up to `reuse` libraries (at least 1). Null
  /// if that failed.
  static std::shared_ptr<probe_server> start(int reuse = 1) {
    // A server that finds a lock its workers need held ends itself (see
    // take_inherited_locks): forked again, a little later each time (such locks are held for
    // microseconds at a time; a thread walking the list of libraries slowly holds it for
    // milliseconds): 8 forks over about 13 ms.
    for (int attempt = 0; attempt < 8; ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(std::chrono::microseconds(100 << (attempt - 1)));
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return nullptr;
      pid_t pid = ::fork();
      if (pid < 0) {
        ::close(sv[0]);
        ::close(sv[1]);
        return nullptr;
      }
      if (pid == 0) serve(sv[1], std::max(reuse, 1));
      ::close(sv[1]);
      auto server = std::shared_ptr<probe_server>(new probe_server(pid, sv[0]));
      char ready = 0; // sent once it has shed what it inherited and taken the locks
      ssize_t n;
      do n = ::recv(sv[0], &ready, 1, 0);
      while (n < 0 && errno == EINTR);
      if (n == 1) return server;
    }
    return nullptr;
  }

  ~probe_server() {
    ::close(control_); // the server sees the hang-up, kills its workers and exits
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }

  /// The room in a request for the library's path and those of its dependencies.
  static constexpr std::size_t request_paths_max = 4 * PATH_MAX;

  /// Asks for a probe of the library at `image`; returns the read end of the pipe that will
  /// carry the probe_result, or -1 if the server is gone (or the paths are too long). The
  /// worker loads the libraries `first` (paths or names) before it, each by itself, and keeps
  /// them (see dependencies_first).
  int request(const std::filesystem::path& image, std::chrono::milliseconds limit,
              const std::vector<std::string>& first = {}) {
    return request(image, -1, limit, first);
  }

  /// The same for the library open as `image_fd` (the worker loads it through its own copy of
  /// the descriptor: the file read is this one, whatever is renamed over its path meanwhile).
  int request(int image_fd, std::chrono::milliseconds limit, const std::vector<std::string>& first = {}) {
    return request({}, image_fd, limit, first);
  }

  /// Reads the answer from `fd`, waiting at most `within` (then `unanswered`), and closes it.
  static probe_result read_result(int fd, std::chrono::milliseconds within) {
    if (fd < 0) return {}; // no server to ask
    pollfd p{fd, POLLIN, 0};
    int ready;
    do ready = ::poll(&p, 1, static_cast<int>(std::clamp<long long>(within.count(), 0, INT_MAX)));
    while (ready < 0 && errno == EINTR);
    if (ready == 0) {
      ::close(fd);
      return {probe_result::unanswered, 0};
    }
    return read_ready(fd);
  }

  /// The same without blocking the coroutine's executor.
  HOTRELOAD_DECL static awaitable<probe_result> async_read_result(int fd, std::chrono::milliseconds within);

  /// Ends a server that does not answer (stopped, or stuck), so that destroying it returns.
  void kill() noexcept { ::kill(pid_, SIGKILL); }

  pid_t pid() const noexcept { return pid_; }

private:
  // Reads the answer from `fd` (readable) and closes it.
  static probe_result read_ready(int fd) {
    probe_result r;
    ssize_t n;
    do n = ::read(fd, &r, sizeof r);
    while (n < 0 && errno == EINTR);
    ::close(fd);
    if (n != static_cast<ssize_t>(sizeof r)) r = {};
    return r;
  }

  struct request_msg {
    std::uint32_t timeout_ms;
    // The library's path (empty: it is the message's second descriptor), then the names or
    // paths of the libraries to load before it, each ending in '\0'.
    char path[request_paths_max];
  };

  // A message's descriptors: where the answer goes, and the library if it came open.
  struct fds_t {
    int reply = -1, image = -1;
  };

  int request(const std::filesystem::path& image, int image_fd, std::chrono::milliseconds limit,
              const std::vector<std::string>& first) {
    request_msg req{};
    req.timeout_ms = static_cast<std::uint32_t>(std::clamp<long long>(limit.count(), 1, INT_MAX));
    std::size_t used = 0;
    auto add = [&](const std::string& s) {
      if (used + s.size() >= sizeof req.path) return false;
      std::memcpy(req.path + used, s.c_str(), s.size() + 1);
      used += s.size() + 1;
      return true;
    };
    bool fits = add(image.native());
    for (auto& lib : first) fits = fits && add(lib);
    if (!fits) {
      errno = ENAMETOOLONG;
      return -1;
    }
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return -1;
    bool sent = send_with_fds(control_, &req, offsetof(request_msg, path) + used, {p[1], image_fd});
    ::close(p[1]);
    if (!sent) {
      ::close(p[0]);
      return -1;
    }
    return p[0];
  }

  // A worker, as the server sees it.
  struct worker {
    pid_t pid = -1;
    int sock = -1;  // the server's end of the worker's socket pair
    int reply = -1; // the answer's pipe while busy (the worker answers on its copy)
    int image = -1; // the library, if it came open, until the worker has answered
    bool busy = false;
    bool leaving = false; // asked to exit once idle (see tend)
    std::uint32_t timeout_ms = 0;
    std::int64_t deadline_ms = 0;  // while busy: loading, then unloading
    std::int64_t unloading_ms = -1; // when it answered and began to unload
  };

  // What a worker tells the server: 'b' (busy with this request, taken from the program's
  // socket; its descriptors attached), 's' (the same, but it will not serve it: a library it
  // keeps was replaced on disk), 'a' (answered), 'i' (idle again, as it was).
  struct news_msg {
    char news;
    request_msg req;
  };

  struct pool {
    // A request waits up to `unload_grace` for a worker that is unloading (tens of
    // microseconds, usually) rather than fork another.
    static constexpr int max = 16, max_idle = 2, unload_grace_ms = 50;
    worker at[max];
    int n = 0;
    int reuse = 1;
    int idle() const noexcept {
      int k = 0;
      for (int i = 0; i < n; ++i) k += !at[i].busy && !at[i].leaving;
      return k;
    }
    // Until when a new request waits for an unloading worker (-1: it need not wait).
    std::int64_t hold_until() const noexcept {
      if (idle() > 0) return -1;
      std::int64_t until = -1;
      for (int i = 0; i < n; ++i)
        if (at[i].unloading_ms >= 0) until = std::max(until, at[i].unloading_ms + unload_grace_ms);
      return until;
    }
  };

  probe_server(pid_t pid, int control) : pid_(pid), control_(control) {}

  // One message with its descriptors attached (the image's only if it is one).
  static bool send_with_fds(int sock, const void* data, std::size_t size, fds_t fds) noexcept {
    iovec iov{const_cast<void*>(data), size};
    alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))]{};
    const int n_fds = fds.image >= 0 ? 2 : 1;
    const int list[2] = {fds.reply, fds.image};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
    auto* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
    std::memcpy(CMSG_DATA(c), list, n_fds * sizeof(int));
    ssize_t n;
    do n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n >= 0;
  }

  // One message (the bytes received, 0 at the peer's end, -1 on error) and its descriptors
  // (-1 where none came).
  static ssize_t receive_with_fds(int sock, void* data, std::size_t size, fds_t& fds, int flags = 0) noexcept {
    alignas(cmsghdr) char cbuf[CMSG_SPACE(2 * sizeof(int))];
    iovec iov{data, size};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    ssize_t got;
    do got = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | flags);
    while (got < 0 && errno == EINTR);
    int list[2] = {-1, -1};
    if (auto* c = CMSG_FIRSTHDR(&msg); got >= 0 && c && c->cmsg_type == SCM_RIGHTS) {
      auto n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      std::memcpy(list, CMSG_DATA(c), std::min<std::size_t>(n, 2) * sizeof(int));
    }
    fds = {list[0], list[1]};
    return got;
  }

  // The server: from here on, system calls only, and no return.
  [[noreturn]] static void serve(int control, int reuse) noexcept {
    control = shed_inheritance(control);
    take_inherited_locks();
    if (::send(control, "r", 1, MSG_NOSIGNAL) != 1) ::_exit(1);
    pool workers;
    workers.reuse = reuse;
    for (;;) {
      pollfd fds[1 + pool::max];
      std::int64_t now = now_ms(), wait = -1, hold = workers.hold_until();
      // An idle worker takes the next request itself; else it is for a new worker.
      bool take = workers.idle() == 0 && workers.n < pool::max && hold <= now;
      fds[0] = {control, static_cast<short>(take ? POLLIN : 0), 0};
      if (hold > now) wait = hold - now;
      for (int i = 0; i < workers.n; ++i) {
        auto& w = workers.at[i];
        fds[1 + i] = {w.sock, POLLIN, 0};
        if (!w.busy) continue;
        std::int64_t left = std::max<std::int64_t>(w.deadline_ms - now, 0);
        if (wait < 0 || left < wait) wait = left;
      }
      if (::poll(fds, nfds_t(1 + workers.n), static_cast<int>(wait)) < 0 && errno != EINTR) ::_exit(1);
      now = now_ms();
      for (int i = workers.n - 1; i >= 0; --i) // from the end: an ended worker is replaced by the last
        tend(workers, i, fds[1 + i].revents, now);
      if (fds[0].revents & POLLIN) {
        if (workers.idle() == 0 && workers.hold_until() <= now) take_request(control, workers); // else: a worker just answered
      } else if (fds[0].revents & (POLLHUP | POLLERR)) shut_down(workers);
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

  // A fork copies the locks the program's other threads held at that moment, held, with no
  // thread here to release them. glibc resets some in the child (malloc's, stdio's, its
  // loader's main lock) but not all that a worker needs (glibc 2.36): the lock on the list of
  // loaded libraries (held for a moment by every dlopen and dlclose, and by dl_iterate_phdr
  // while it runs), the lock on the exit handlers (every static object's registration, and
  // __cxa_finalize in a dlclose); ThreadSanitizer's own around dlopen. Found held, one would
  // hang every worker's dlopen until its time limit, so the server takes each once, under a
  // timer whose signal ends it (all signals are at their defaults by now): start() forks
  // again. It also registers what makes exit end a worker at once (see work), which workers
  // inherit. (Not covered: GCC 12's AddressSanitizer, whose allocator and globals locks a
  // fork copies held too; see the test of this.)
  static void take_inherited_locks() noexcept {
    itimerval limit{};
    limit.it_value.tv_usec = 250'000;
    ::setitimer(ITIMER_REAL, &limit, nullptr);
    // A static initialiser that calls exit must not run the program's atexit handlers and
    // static destructors (copies of the program's, which may remove its files) or flush
    // copies of its stdio buffers: registered last, this runs first, and ends the worker.
    ::on_exit([](int status, void*) { ::_exit(status); }, nullptr);
    ::dl_iterate_phdr([](dl_phdr_info*, std::size_t, void*) { return 1; }, nullptr);
    if (void* libc = ::dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD)) ::dlclose(libc);
    limit.it_value = {};
    ::setitimer(ITIMER_REAL, &limit, nullptr);
  }

  static std::int64_t now_ms() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
  }

  static void answer(int fd, probe_result r) noexcept {
    (void)::write(fd, &r, sizeof r); // one write of 12 bytes: atomic on a pipe
    ::close(fd);
  }

  // Worker i's news: 'a' (it answered), 'i' (idle again, as it was), its end, or its time up.
  static void tend(pool& workers, int i, short revents, std::int64_t now) noexcept {
    auto& w = workers.at[i];
    if (revents & POLLIN) {
      news_msg m;
      fds_t fds;
      ssize_t got = receive_with_fds(w.sock, &m, sizeof m, fds, MSG_DONTWAIT);
      const auto size = static_cast<std::size_t>(got) - offsetof(news_msg, req); // of a request it took
      const bool took = got > 0 && (m.news == 'b' || m.news == 's') && !w.busy && valid(m.req, size, fds);
      if (got > 0 && !took)
        for (int fd : {fds.reply, fds.image})
          if (fd >= 0) ::close(fd);
      if (took && m.news == 'b') {
        w.reply = fds.reply;
        w.image = fds.image;
        w.busy = true;
        w.timeout_ms = m.req.timeout_ms;
        w.deadline_ms = now + m.req.timeout_ms;
      } else if (took) { // it keeps a library that was replaced on disk: the request goes to a new worker
        end(workers, i, false);
        dispatch(workers, m.req, size, fds);
      } else if (got == 1 && m.news == 'a') { // answering; the server's copy of the pipe stays for a death right after
        w.deadline_ms = now + w.timeout_ms; // as long again to unload it
        w.unloading_ms = now;
        close_image(w);
      } else if (got == 1 && m.news == 'i') {
        ::close(w.reply);
        w.reply = -1;
        w.busy = false;
        w.unloading_ms = -1;
        // More idle workers than needed: this one leaves, once it has read that (it may be
        // taking a request from the program's socket right now).
        if (workers.idle() > pool::max_idle && ::send(w.sock, "q", 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
          w.leaving = true;
      } else if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
        end(workers, i, false);
      }
    } else if (revents & (POLLHUP | POLLERR)) {
      end(workers, i, false);
    } else if (w.busy && now >= w.deadline_ms) {
      end(workers, i, true);
    }
  }

  // Ends worker i (killed if still running) and answers for it if an answer may be owed (a
  // second answer after the worker's own is never read: the caller reads one).
  static void end(pool& workers, int i, bool timed_out) noexcept {
    auto& w = workers.at[i];
    ::kill(w.pid, SIGKILL); // a worker that already exited keeps its own status
    int status = 0;
    while (::waitpid(w.pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (w.reply >= 0) {
      probe_result r = timed_out           ? probe_result{probe_result::timed_out, 0}
                       : WIFSIGNALED(status) ? probe_result{probe_result::signalled, WTERMSIG(status)}
                                             : probe_result{probe_result::exited, WEXITSTATUS(status)};
      r.worker = w.pid;
      answer(w.reply, r);
    }
    close_image(w);
    ::close(w.sock);
    w = workers.at[--workers.n];
  }

  // One request: to an idle worker, or a new one.
  static void take_request(int control, pool& workers) noexcept {
    request_msg req;
    fds_t fds;
    ssize_t got = receive_with_fds(control, &req, sizeof req, fds, MSG_DONTWAIT);
    if (got == 0) shut_down(workers);
    if (got < 0) return; // a worker took it first
    if (!valid(req, static_cast<std::size_t>(got), fds)) {
      for (int fd : {fds.reply, fds.image})
        if (fd >= 0) ::close(fd);
      return;
    }
    dispatch(workers, req, static_cast<std::size_t>(got), fds);
  }

  // Whether a request is whole: a path, or none and the library's descriptor; a reply pipe.
  static bool valid(const request_msg& req, std::size_t size, fds_t fds) noexcept {
    if (size <= offsetof(request_msg, path) || size > sizeof req) return false;
    const std::size_t len = size - offsetof(request_msg, path);
    return fds.reply >= 0 && req.path[len - 1] == '\0' && (req.path[0] == '\0') == (fds.image >= 0);
  }

  // Hands a request to a worker forked for it (an idle one takes its requests itself), or
  // answers `lost`. The worker's entry keeps the library's descriptor until it has answered.
  static void dispatch(pool& workers, const request_msg& req, std::size_t size, fds_t fds) noexcept {
    bool taken = false;
    for (int attempt = 0; attempt < 2 && !taken; ++attempt) {
      if (!hire(workers)) break;
      const int i = workers.n - 1;
      auto& w = workers.at[i];
      if (!send_with_fds(w.sock, &req, size, fds)) {
        end(workers, i, false); // it died meanwhile: once more, with another
        continue;
      }
      w.reply = fds.reply;
      w.image = fds.image;
      w.busy = true;
      w.timeout_ms = req.timeout_ms;
      w.deadline_ms = now_ms() + req.timeout_ms;
      taken = true;
    }
    if (taken) return;
    if (fds.image >= 0) ::close(fds.image);
    answer(fds.reply, probe_result{});
  }

  static void close_image(worker& w) noexcept {
    if (w.image >= 0) ::close(w.image);
    w.image = -1;
  }

  // A new worker at the end of the pool.
  static bool hire(pool& workers) noexcept {
    if (workers.n == pool::max) return false;
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return false;
    pid_t pid = ::fork();
    if (pid == 0) {
      ::dup2(sv[1], 4); // the program's socket stays 3
      ::syscall(SYS_close_range, 5u, ~0u, 0u);
      work(3, 4, workers.reuse);
    }
    ::close(sv[1]);
    if (pid < 0) {
      ::close(sv[0]);
      return false;
    }
    workers.at[workers.n] = worker{};
    workers.at[workers.n].pid = pid;
    workers.at[workers.n++].sock = sv[0];
    return true;
  }

  // A worker: loads what it is sent, answers, unloads it and checks that nothing is left.
  // Its first request comes from the server, which forked it for that one; the next ones it
  // takes from the program's socket (`control`), and tells the server.
  [[noreturn]] static void work(int control, int sock, int reuse) noexcept {
    // Exit ends it at once: the server registered that (see take_inherited_locks).
    // What a clean worker holds (one thread, or two with a sanitizer's own; its descriptors;
    // its memory).
    auto clean_state = footprint::now();
    kept_libraries kept;
    for (int used = 1;; ++used) {
      news_msg m;
      request_msg& req = m.req;
      fds_t fds;
      ssize_t got;
      if (used == 1) {
        if ((got = receive_with_fds(sock, &req, sizeof req, fds)) <= 0 || fds.reply < 0) ::_exit(0);
      } else {
        got = next_request(control, sock, req, fds);
        if (got <= 0) ::_exit(0);
        if (!valid(req, static_cast<std::size_t>(got), fds)) ::_exit(0); // its descriptors go with it
        // 's': the server gives it to a new worker, which loads what this one kept anew.
        m.news = kept.replaced() ? 's' : 'b';
        if (!send_with_fds(sock, &m, offsetof(news_msg, req) + static_cast<std::size_t>(got), fds) || m.news == 's')
          ::_exit(0);
      }
      char by_fd[32];
      const char* path = req.path;
      if (fds.image >= 0) {
        std::snprintf(by_fd, sizeof by_fd, "/proc/self/fd/%d", fds.image);
        path = by_fd;
      }
      // Its dependencies, each by itself first, as the program's load does (dependencies_first;
      // and RTLD_NOW, so that one that cannot load by itself is left to the library's load
      // here too). Never closed: they are kept, as what a library brought in is.
      const char* end = req.path + (static_cast<std::size_t>(got) - offsetof(request_msg, path));
      for (const char* lib = req.path + std::strlen(req.path) + 1; lib < end; lib += std::strlen(lib) + 1)
        ::dlopen(lib, RTLD_NOW | RTLD_LOCAL);
      // RTLD_LAZY: what the probe is for is the static initialisers; binding every function
      // first (RTLD_NOW) took 213 us of a -O0 plugin's 1.9 MB against 86 lazily (93 against
      // 80 at -O2). Nothing is lost: the program's own load is RTLD_NOW, which refuses a
      // missing symbol before any of the library's code runs, and a static initialiser that
      // calls a missing function ends the worker with the dynamic linker's status 127.
      void* handle = ::dlopen(path, RTLD_LAZY | RTLD_LOCAL);
      // The server hears of it first: by the time the caller has the answer (and perhaps
      // sends the next request), the server knows this worker will soon be free.
      if (::send(sock, "a", 1, MSG_NOSIGNAL) != 1) ::_exit(0);
      answer(fds.reply, probe_result{probe_result::loaded, handle ? 0 : 1, static_cast<std::int32_t>(::getpid())});
      if (used >= reuse) ::_exit(0); // no destructors, no atexit handlers
      ::sched_yield(); // the program, perhaps woken onto this core, goes first (see the top)
      if (handle) kept.note_dependencies(handle);
      bool clean = !handle || unloads(handle, path);
      if (fds.image >= 0) ::close(fds.image);
      if (!clean || !footprint::now().within(clean_state)) ::_exit(0);
      bool loaded = false;
      if (!kept.keep(loaded)) ::_exit(0);
      if (loaded) clean_state = footprint::now(); // what the kept libraries hold is the worker's from now on
      if (::send(sock, "i", 1, MSG_NOSIGNAL) != 1) ::_exit(0);
    }
  }

  // What a worker keeps loaded between probes beyond what it started with: the libraries
  // that probed libraries brought in (loaded again by themselves once the probed library is
  // gone: loaded with it, a library may bind to its symbols and so hold it), and any that
  // would not unload (NODELETE). Each with the identity (device, inode) of the file it was
  // mapped from, so that a later build of it is noticed: a probe must run the static
  // initialisers that the program's own load will run.
  class kept_libraries {
  public:
    kept_libraries() noexcept {
      for (link_map* l = _r_debug.r_map; l; l = l->l_next) start_ = l;
    }

    // Notes the paths of the libraries that loading `handle` brought in (loaded after it).
    void note_dependencies(void* handle) noexcept {
      n_noted_ = 0;
      std::size_t used = 0;
      link_map* lib = nullptr;
      if (::dlinfo(handle, RTLD_DI_LINKMAP, &lib) != 0 || !lib) return;
      for (link_map* d = lib->l_next; d && n_noted_ < max; d = d->l_next) {
        if (!d->l_name || d->l_name[0] != '/') continue;
        const std::size_t len = std::strlen(d->l_name) + 1;
        if (used + len > sizeof names_) break;
        std::memcpy(names_ + used, d->l_name, len);
        noted_[n_noted_++] = used;
        used += len;
      }
    }

    // Once the probed library is gone: loads the noted libraries by themselves (the last
    // loaded first, so that each finds what it needs) and notes what is still loaded beyond
    // the start. False if something cannot be kept (too many, or its file not found in the
    // map). `loaded`: whether any library's static initialisers ran.
    bool keep(bool& loaded) noexcept {
      loaded = false;
      for (int i = n_noted_ - 1; i >= 0; --i) {
        void* pin = ::dlopen(names_ + noted_[i], RTLD_LAZY | RTLD_LOCAL);
        link_map* l = nullptr;
        if (!pin) continue;
        loaded = true;
        if (::dlinfo(pin, RTLD_DI_LINKMAP, &l) != 0 || !l || find(l) || n_ == max) {
          ::dlclose(pin);
          continue;
        }
        at_[n_++] = {l, 0, 0, false}; // its reference is the worker's for good
      }
      n_noted_ = 0;
      bool fresh = false;
      for (link_map* l = start_ ? start_->l_next : nullptr; l; l = l->l_next) {
        if (find(l)) continue;
        if (n_ == max || !l->l_name || l->l_name[0] != '/') return false;
        at_[n_++] = {l, 0, 0, false}; // it would not unload
      }
      for (int i = 0; i < n_; ++i) fresh |= !at_[i].known;
      return !fresh || identify();
    }

    // Whether the file of a kept library was replaced (or removed) since it was loaded.
    bool replaced() const noexcept {
      for (int i = 0; i < n_; ++i) {
        struct stat st{};
        if (::stat(at_[i].map->l_name, &st) != 0 || st.st_dev != at_[i].dev || st.st_ino != at_[i].ino) return true;
      }
      return false;
    }

  private:
    struct one {
      link_map* map;
      dev_t dev;
      ino_t ino;
      bool known; // dev and ino found
    };

    bool find(const link_map* l) const noexcept {
      for (int i = 0; i < n_; ++i)
        if (at_[i].map == l) return true;
      return false;
    }

    // The identity of each kept library's file not yet known, from the mapping that holds its
    // dynamic section: the file it was loaded from, whatever its path names now.
    bool identify() noexcept {
      int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
      if (fd < 0) return false;
      char buf[8192];
      std::size_t have = 0;
      bool end = false;
      for (;;) {
        if (!end && have < sizeof buf) {
          ssize_t got = ::read(fd, buf + have, sizeof buf - have);
          if (got > 0) have += static_cast<std::size_t>(got);
          else if (got == 0 || errno != EINTR) end = true;
        }
        auto* nl = static_cast<char*>(std::memchr(buf, '\n', have));
        if (!nl) {
          if (end || have == sizeof buf) break;
          continue;
        }
        *nl = '\0';
        note_mapping(buf);
        const std::size_t line = static_cast<std::size_t>(nl + 1 - buf);
        std::memmove(buf, nl + 1, have - line);
        have -= line;
      }
      ::close(fd);
      for (int i = 0; i < n_; ++i)
        if (!at_[i].known) return false;
      return true;
    }

    // One line of /proc/self/maps: "start-end perms offset major:minor inode path".
    void note_mapping(char* line) noexcept {
      char* p = line;
      const auto from = std::strtoull(p, &p, 16);
      const auto to = (*p == '-') ? std::strtoull(p + 1, &p, 16) : 0;
      for (int field = 0; field < 2 && *p; ++field) { // perms, offset
        while (*p == ' ') ++p;
        while (*p && *p != ' ') ++p;
      }
      const auto major = static_cast<unsigned>(std::strtoul(p, &p, 16));
      const auto minor = (*p == ':') ? static_cast<unsigned>(std::strtoul(p + 1, &p, 16)) : 0u;
      const auto inode = std::strtoull(p, &p, 10);
      if (inode == 0) return;
      for (int i = 0; i < n_; ++i) {
        auto at = reinterpret_cast<std::uintptr_t>(at_[i].map->l_ld);
        if (!at_[i].known && at >= from && at < to) {
          at_[i].dev = makedev(major, minor);
          at_[i].ino = static_cast<ino_t>(inode);
          at_[i].known = true;
        }
      }
    }

    static constexpr int max = 64;
    one at_[max];
    int n_ = 0;
    link_map* start_ = nullptr; // the last object loaded when the worker started
    char names_[8192];          // the noted paths, one after another
    std::size_t noted_[max];    // where each starts in names_
    int n_noted_ = 0;
  };

  // The program's next request, taken from its socket by whichever idle worker reads it
  // first (the bytes, as receive_with_fds); 0 when the server asks this worker to leave, or
  // the server or the program is gone.
  static ssize_t next_request(int control, int sock, request_msg& req, fds_t& fds) noexcept {
    for (;;) {
      pollfd p[2] = {{sock, POLLIN, 0}, {control, POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return 0;
      }
      if (p[0].revents != 0) return 0; // "q", or the server's end
      if (p[1].revents & POLLIN) {
        ssize_t got = receive_with_fds(control, &req, sizeof req, fds, MSG_DONTWAIT);
        if (got < 0 && errno == EAGAIN) continue; // another worker, or the server, took it
        return got < 0 ? 0 : got;
      }
      if (p[1].revents != 0) return 0;
    }
  }

  // Whether, after dlclose, the library is gone.
  static bool unloads(void* handle, const char* path) noexcept {
    ::dlclose(handle);
    if (void* still = ::dlopen(path, RTLD_LAZY | RTLD_NOLOAD)) {
      ::dlclose(still);
      return false;
    }
    return true;
  }

  // How much more memory a worker may hold resident than when it was clean: what static
  // initialisers allocated and never freed, or a sanitizer's quarantine. Past it, the worker
  // leaves.
  static constexpr long max_growth = 64L << 20;

  // What a worker holds: its threads, its descriptors and its resident memory (-1: unknown).
  struct footprint {
    int threads = 0, descriptors = 0;
    long resident = -1; // bytes
    static footprint now() noexcept {
      return {count_entries("/proc/self/task"), count_entries("/proc/self/fd"), resident_bytes()};
    }
    // No thread or descriptor a library made is left, nor more than max_growth of memory.
    bool within(const footprint& clean) const noexcept {
      return threads == clean.threads && descriptors == clean.descriptors &&
             (resident < 0 || clean.resident < 0 || resident - clean.resident <= max_growth);
    }
  };

  // Bytes of this process resident now (the second field of /proc/self/statm, in pages), or -1.
  static long resident_bytes() noexcept {
    int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[128];
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    const char* at = buf;
    while (*at && *at != ' ') ++at; // the size, then the resident pages
    if (!*at) return -1;
    long pages = 0;
    for (++at; *at >= '0' && *at <= '9'; ++at) pages = pages * 10 + (*at - '0');
    return pages * ::sysconf(_SC_PAGESIZE);
  }

  // Entries of a /proc directory (without . and ..), or -1.
  static int count_entries(const char* dir) noexcept {
    int fd = ::open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    alignas(8) char buf[4096];
    int count = 0;
    for (;;) {
      long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
      if (n <= 0) break;
      for (long at = 0; at < n;) {
        unsigned short reclen;
        std::memcpy(&reclen, buf + at + 16, sizeof reclen); // linux_dirent64: ino, off, reclen, type, name
        count += buf[at + 19] != '.';
        at += reclen;
      }
    }
    ::close(fd);
    return count;
  }

  [[noreturn]] static void shut_down(pool& workers) noexcept {
    while (workers.n > 0) end(workers, workers.n - 1, false);
    ::_exit(0);
  }

  pid_t pid_;
  int control_;
};

} // namespace hotreload::detail

#ifndef HOTRELOAD_SEPARATE_COMPILATION
#include <hotreload/detail/linux/impl/probe.ipp>
#endif

#endif
