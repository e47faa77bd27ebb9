#ifndef HOTRELOAD_DETAIL_LINUX_CHILD_PROCESS_HPP
#define HOTRELOAD_DETAIL_LINUX_CHILD_PROCESS_HPP

// A shell command run as a child process, for rebuild_watcher: started with posix_spawn (the
// kernel's vfork: no copy of the program's page tables, safe whatever the program's threads
// are doing, and no io_context::notify_fork), in a process group of its own so that the
// whole build (the shell, ninja or make, the compilers) can be signalled at once, its
// output (stdout and stderr, merged) read through a pipe, and its end awaited through a
// pidfd on the caller's executor.

#include <hotreload/config.hpp>
#include <hotreload/detail/result.hpp>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include <fcntl.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace hotreload::detail {

class child_process {
public:
  /// Starts `/bin/sh -c command` in `dir` (empty: the program's), stdin from /dev/null. Any
  /// failure to start is the error's text.
  template <class Executor>
  static std::unique_ptr<child_process> spawn(const Executor& ex, const std::string& command,
                                              const std::filesystem::path& dir, std::string& error) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) {
      error = std::string("pipe2: ") + std::strerror(errno);
      return nullptr;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    ::posix_spawn_file_actions_init(&fa);
    ::posix_spawnattr_init(&attr);
    ::posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    ::posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    ::posix_spawn_file_actions_adddup2(&fa, out[1], 2);
    if (!dir.empty()) ::posix_spawn_file_actions_addchdir_np(&fa, dir.c_str());
    // A group of its own; signals as a fresh program has them (the host may block or ignore
    // some, and a build that inherits an ignored SIGTERM or SIGPIPE cannot be stopped).
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    for (int s : {SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGALRM, SIGTERM, SIGUSR1, SIGUSR2, SIGCHLD})
      sigaddset(&defaults, s);
    ::posix_spawnattr_setpgroup(&attr, 0);
    ::posix_spawnattr_setsigmask(&attr, &none);
    ::posix_spawnattr_setsigdefault(&attr, &defaults);
    ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    std::string c = command;
    char sh[] = "/bin/sh", dash_c[] = "-c";
    char* argv[] = {sh, dash_c, c.data(), nullptr};
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, environ);
    ::posix_spawn_file_actions_destroy(&fa);
    ::posix_spawnattr_destroy(&attr);
    ::close(out[1]);
    if (rc != 0) {
      ::close(out[0]);
      error = "cannot start /bin/sh" + (dir.empty() ? std::string() : " in " + dir.string()) + ": " + std::strerror(rc);
      return nullptr;
    }
    return std::unique_ptr<child_process>(new child_process(ex, pid, out[0]));
  }

  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  /// A child still running when its owner goes (the program's io_context is being
  /// destroyed) is killed with its whole group and reaped here: no orphan, no zombie.
  ~child_process() {
    if (!reaped_) {
      ::kill(-pid_, SIGKILL);
      int status;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {}
    }
  }

  pid_t pid() const noexcept { return pid_; }

  /// Sends `sig` to the child's whole process group (nothing once it has been reaped).
  void signal_group(int sig) const {
    if (!reaped_) ::kill(-pid_, sig);
  }

  /// Reads the output into `into` until its end (every writer closed the pipe) or close_output().
  HOTRELOAD_DECL awaitable<void> read_output(std::string& into, std::size_t limit);

  /// Stops reading: what is in the pipe is appended to `into` first. (A process the build
  /// left behind may hold the pipe open; its later output is not waited for.)
  void close_output(std::string& into, std::size_t limit) {
    if (!output_.is_open()) return;
    boost::system::error_code ec;
    output_.non_blocking(true, ec);
    std::array<char, 16 * 1024> buf;
    for (;;) {
      auto n = output_.read_some(asio::buffer(buf), ec);
      keep(into, std::string_view(buf.data(), n), limit);
      if (ec) break;
    }
    output_.close(ec);
  }

  /// Waits for the child's end and reaps it; its wait status (-1 if it cannot be known).
  HOTRELOAD_DECL awaitable<int> wait();

  /// "exit status 1", "killed by signal 15 (Terminated)".
  static std::string describe_status(int status) {
    if (status == -1) return "exit status unknown (the program reaps its children itself, or ignores SIGCHLD)";
    if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
      return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" + ::strsignal(WTERMSIG(status)) + ")";
    return "wait status " + std::to_string(status);
  }

private:
  template <class Executor>
  child_process(const Executor& ex, pid_t pid, int out) : pid_(pid), output_(ex, out), pidfd_(ex) {
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd >= 0) {
      ::fcntl(fd, F_SETFD, FD_CLOEXEC);
      pidfd_.assign(fd);
    }
  }

  // Its status once it has ended; -2 if it still runs (with WNOHANG); -1 if unknown.
  int reap(int flags) {
    int status = 0;
    pid_t r;
    while ((r = ::waitpid(pid_, &status, flags)) < 0 && errno == EINTR) {}
    if (r == 0) return -2;
    reaped_ = true;
    return r == pid_ ? status : -1;
  }

  // Appends `s` to `into`, keeping at most `limit` bytes: the first half and the latest.
  static void keep(std::string& into, std::string_view s, std::size_t limit) {
    into.append(s);
    if (into.size() <= limit) return;
    auto half = limit / 2;
    const std::string_view cut = "\n[... output cut ...]\n";
    if (into.compare(half, cut.size(), cut) != 0) into.insert(half, cut);
    auto keep_from = half + cut.size();
    into.erase(keep_from, into.size() - limit);
  }

  pid_t pid_;
  bool reaped_ = false;
  asio::posix::stream_descriptor output_;
  asio::posix::stream_descriptor pidfd_;
};

} // namespace hotreload::detail

#ifndef HOTRELOAD_SEPARATE_COMPILATION
#include <hotreload/detail/linux/impl/child_process.ipp>
#endif

#endif
