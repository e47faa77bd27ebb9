// The counter example: a command-line host for plugins that execute text commands.
//
//   counter_cli --plugins DIR [--state DIR]     then, one per line on standard input:
//     NAME COMMAND    e.g. `counter increment`, `counter show`: runs COMMAND in plugin NAME
//     plugins         lists name, version, enabled, reloads (and the last error)
//     reload NAME     reloads NAME from its library (its state is kept)
//     enable NAME     hands NAME out again
//     disable NAME    stops handing NAME out (it stays loaded)
//     help, quit
// A library rebuilt in DIR is reloaded by itself. With --state, plugins' state is also kept
// in that directory (persistent_json_state), so the count survives a restart of the
// program too. The prompt shows only on a terminal.
#include <hotreload.hpp>

#include "command.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

#include <unistd.h>

namespace asio = boost::asio;
namespace hr = hotreload;
using reloader_type =
    hr::basic_hot_reloader<command_plugin, hr::default_watcher, hr::dll_loader, hr::persistent_json_state>;

constexpr const char* help = "commands: NAME COMMAND | plugins | reload NAME | enable NAME | disable NAME | help | quit";

// Runs one command line on the io_context; false on `quit`.
static asio::awaitable<bool> run_command(reloader_type& reloader, std::string line) {
  std::istringstream in(line);
  std::string word, arg;
  in >> word;
  std::getline(in >> std::ws, arg);
  try {
    if (word.empty()) {
    } else if (word == "quit" || word == "exit") {
      co_return false;
    } else if (word == "help") {
      std::cout << help << "\n";
    } else if (word == "plugins") {
      std::cout << std::left << std::setw(12) << "NAME" << std::setw(10) << "VERSION" << std::setw(9) << "ENABLED"
                << "RELOADS\n";
      for (const hr::plugin_info& p : reloader.plugins()) {
        std::cout << std::setw(12) << p.name << std::setw(10) << p.version << std::setw(9)
                  << (p.enabled ? "yes" : "no") << p.reloads;
        if (p.last_error) std::cout << "  last error: " << p.last_error->message;
        std::cout << "\n";
      }
    } else if (word == "reload") {
      auto before = reloader.info(arg);
      co_await reloader.async_reload_plugin(arg, asio::use_awaitable);
      std::cout << "reloaded " << arg << " " << (before ? before->version : "?") << " -> "
                << reloader.info(arg)->version << "\n";
    } else if (word == "enable" || word == "disable") {
      hr::error_code ec = word == "enable" ? reloader.enable(arg) : reloader.disable(arg);
      std::cout << (ec ? "error: no plugin named '" + arg + "'" : arg + " " + word + "d") << "\n";
    } else {
      // A plugin's command. async_get waits if that plugin is being reloaded.
      hr::plugin_ptr<command_plugin> p = co_await reloader.async_get(word, asio::use_awaitable);
      std::cout << p->execute(arg) << "\n";
    }
  } catch (const hr::hot_reload_error& e) {
    std::cout << "error: " << e.what() << "\n";
  }
  co_return true;
}

int main(int argc, char** argv) {
  hr::options opts{.debounce = std::chrono::milliseconds{50}};
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string_view(argv[i]) == "--plugins") opts.plugin_dirs = {argv[i + 1]};
    else if (std::string_view(argv[i]) == "--state") opts.state_dir = argv[i + 1];
  }
  if (opts.plugin_dirs.empty() || argc % 2 == 0) {
    std::cerr << "usage: counter_cli --plugins DIR [--state DIR]\n";
    return 2;
  }
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  reloader_type reloader(io.get_executor(), opts);
  // The host's last word on a new version: no downgrades (a rollback is never asked about).
  reloader.set_acceptance_check([](hr::candidate<command_plugin> c) -> asio::awaitable<hr::verdict> {
    auto order = c.old_version ? hr::compare_versions(c.new_version.version, c.old_version->version) : 1;
    if (order && *order < 0)
      co_return hr::verdict::refuse(c.new_version.version + " is older than " + c.old_version->version +
                                    " (downgrades are refused)");
    co_return hr::verdict::accept();
  });
  // An action after each reload: the events say what happened, on the reloader's strand.
  reloader.subscribe([](const hr::reload_event& e) {
    if (e.kind == hr::event_kind::reloaded)
      std::cout << "(" << e.plugin << " " << e.old_version << " -> " << e.new_version << " in "
                << std::chrono::duration_cast<std::chrono::milliseconds>(e.duration).count() << " ms)" << std::endl;
  });

  // Standard input is read on its own thread (it may be a file, a pipe or a terminal);
  // each line runs on the io_context, one after the other.
  std::jthread input([&] {
    const bool terminal = ::isatty(STDIN_FILENO);
    auto run = [&](auto op) { return asio::co_spawn(io, std::move(op), asio::use_future).get(); };
    try {
      run(reloader.async_start(asio::use_awaitable));
    } catch (const std::exception& e) {
      std::cout << "some plugins did not start: " << e.what() << "\n";
    }
    std::string line;
    for (;;) {
      if (terminal) std::cout << "> " << std::flush;
      if (!std::getline(std::cin, line) || !run(run_command(reloader, line))) break;
      std::cout << std::flush;
    }
    try {
      run(reloader.async_stop(asio::use_awaitable));
    } catch (const std::exception& e) {
      std::cout << "stop: " << e.what() << "\n";
    }
    work.reset();
  });
  io.run();
  return 0;
}
