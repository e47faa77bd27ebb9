// Unit tests of the parts that need no plugin library: metadata, semver, ABI tags, the
// dependency graph, the strand primitives, the Linux file checks, and the policy concepts.
#include <hotreload/abi.hpp>
#include <hotreload/detail/background.hpp>
#include <hotreload/detail/graph.hpp>
#include <hotreload/detail/hook_threads.hpp>
#include <hotreload/detail/keepalive_executor.hpp>
#include <hotreload/detail/linux/elf.hpp>
#include <hotreload/detail/linux/host_exports.hpp>
#include <hotreload/detail/linux/probe.hpp>
#include <hotreload/detail/linux/shadow_copy.hpp>
#include <hotreload/detail/sync.hpp>
#include <hotreload/loader/dll_loader.hpp>
#include <hotreload/metadata.hpp>
#include <hotreload/state/json_state.hpp>
#include <hotreload/state/null_state.hpp>
#include <hotreload/watcher/manual_watcher.hpp>

#include <doctest/doctest.h>

#include "plugins/counter_iface.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <fstream>
#include <future>
#include <optional>
#include <sstream>

namespace hr = hotreload;
namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

TEST_CASE("metadata parsing") {
  hr::plugin_metadata m;
  CHECK(!hr::parse_metadata(R"({"name": "db", "version": "1.2.0", "depends_on": ["log", "cache >=1.2"],
                               "state_version": 3, "extra": true})",
                            "x.so", m));
  CHECK(m.name == "db");
  CHECK(m.version == "1.2.0");
  REQUIRE(m.depends_on.size() == 2);
  CHECK(m.depends_on[1].name == "cache");
  CHECK(m.depends_on[1].requirement == ">=1.2");
  CHECK(m.state_version == 3);
  CHECK(m.raw.contains("extra"));
  for (auto bad : {"", "[]", "{", R"({"version": "1"})", R"({"name": ""})", R"({"name": "a b"})",
                   R"({"name": "a", "version": 1})", R"({"name": "a", "depends_on": "b"})",
                   R"({"name": "a", "depends_on": [1]})", R"({"name": "a", "state_version": 0})",
                   R"({"name": "a", "state_version": "2"})", R"({"name": "a", "depends_on": ["~og"]})",
                   R"({"name": "a", "depends_on": ["db >=1.2s"]})", R"({"name": "a", "depends_on": ["d/b"]})",
                   R"({"name": "a", "depends_on": ["db ^0.99999999999999999"]})", R"({"name": "."})",
                   R"({"name": ".."})", R"({"name": "a", "depends_on": [".."]})"}) {
    CAPTURE(bad);
    auto err = hr::parse_metadata(bad, "x.so", m);
    CHECK(err.code == hr::errc::bad_metadata);
    CHECK(err.message.find("x.so") != std::string::npos);
  }
  std::string huge = R"({"name": "a", "pad": ")" + std::string(1 << 20, 'x') + "\"}";
  CHECK(hr::parse_metadata(huge, "x.so", m).code == hr::errc::bad_metadata);
}

TEST_CASE("ABI tags: each difference is named") {
  auto ours = hr::make_abi_tag<test::counter_iface>();
  CHECK(hr::abi_mismatch(ours, ours).empty());
  CHECK(!hr::detail::abi_problem(ours, ours));
  auto t = ours;
  t.boost_version += 1;
  CHECK(hr::abi_mismatch(ours, t).find("Boost") != std::string::npos);
  t = ours;
  t.abi_version += 1;
  CHECK(hr::abi_mismatch(ours, t).find("ABI version") != std::string::npos);
  t = ours;
  t.interface_version += 1;
  CHECK(hr::abi_mismatch(ours, t).find("another version of interface") != std::string::npos);
  auto other = hr::make_abi_tag<test::other_iface>();
  CHECK(hr::abi_mismatch(ours, other).find("implements interface") != std::string::npos);
  CHECK(hr::detail::abi_problem(ours, other).code == hr::errc::abi_mismatch);
}

// The policy concepts, both ways.
namespace {
struct no_stop_watcher {
  hr::error_info start(const std::vector<fs::path>&, hr::change_handler) { return {}; }
};
struct bad_loader {
  int load(const fs::path&) { return 0; }
};
struct no_flag_state {
  hr::error_info save(std::string_view, const boost::json::object&) { return {}; }
  std::optional<boost::json::object> load(std::string_view) { return {}; }
};
} // namespace
static_assert(hr::watcher<hr::manual_watcher>);
static_assert(!hr::watcher<no_stop_watcher>);
static_assert(!hr::watcher<int>);
static_assert(hr::loader<hr::dll_loader>);
static_assert(!hr::loader<bad_loader>);
static_assert(hr::state_store<hr::json_state>);
static_assert(hr::state_store<hr::null_state>);
static_assert(!hr::state_store<no_flag_state>);
static_assert(hr::named_interface<test::counter_iface>);
static_assert(!hr::named_interface<hr::plugin>);
// The executors a plugin's code runs on fit in any_io_executor's own storage. A larger one
// goes behind Asio's shared_target_executor, whose count ends with a standalone fence that
// ThreadSanitizer cannot see: it reports a data race at every last release (in users'
// programs too).
static_assert(sizeof(hr::detail::keepalive_executor<hr::detail::hook_threads::executor_type>) <=
              sizeof(std::shared_ptr<void>) + sizeof(void*));
static_assert(sizeof(hr::detail::keepalive_executor<hr::asio::any_io_executor>) <=
              sizeof(std::shared_ptr<void>) + sizeof(void*));

TEST_CASE("semver requirements") {
  using hotreload::detail::satisfies;
  CHECK(*satisfies("1.2.0", ">=1.2"));
  CHECK(!*satisfies("1.1.9", ">=1.2"));
  CHECK(*satisfies("1.4.0", ">=1.2, <2"));
  CHECK(!*satisfies("2.0.0", ">=1.2 <2"));
  CHECK(*satisfies("1.9.3", "^1.2"));
  CHECK(!*satisfies("2.0.0", "^1.2"));
  CHECK(!*satisfies("0.3.0", "^0.2"));
  CHECK(*satisfies("1.2.9", "~1.2"));
  CHECK(!*satisfies("1.3.0", "~1.2"));
  CHECK(*satisfies("1.2.3", "1.2.3"));
  CHECK(*satisfies("1.2.3", "==1.2.3"));
  CHECK(*satisfies("1.2.3", "*"));
  CHECK(*satisfies("1.2.3", ">= 1.2"));
  CHECK(!*satisfies("1.2.0-rc1", ">=1.2.0"));
  CHECK(*satisfies("1.2.0+build5", "=1.2.0"));
  CHECK(!satisfies("one", ">=1"));
  CHECK(!satisfies("1.0", ">=x"));
}

// ---- the dependency graph ------------------------------------------------------------

namespace {
hr::plugin_metadata meta(std::string name, std::string version, std::vector<std::string> deps = {}) {
  hr::plugin_metadata m;
  std::string json = R"({"name": ")" + name + R"(", "version": ")" + version + R"(", "depends_on": [)";
  for (std::size_t i = 0; i < deps.size(); ++i) json += (i ? ", \"" : "\"") + deps[i] + "\"";
  REQUIRE(!hr::parse_metadata(json + "]}", "x.so", m));
  return m;
}
} // namespace

TEST_CASE("graph: what keeps a version from serving next to the others") {
  auto db = meta("db", "2.0.0"), tasks = meta("tasks", "1.0.0", {"db <3"}), self = meta("me", "1.0.0", {"me"});
  auto odd = meta("odd", "1.0.0", {"db >=1"});
  hr::detail::version_map vs{{"db", &db}, {"tasks", &tasks}};
  CHECK(!hr::detail::dependency_problem(tasks, vs));
  CHECK(hr::detail::dependency_problem(self, vs).code == hr::errc::dependency_cycle);
  CHECK(hr::detail::dependency_problem(tasks, {{"tasks", &tasks}}).code == hr::errc::missing_dependency);
  CHECK(hr::detail::dependency_problem(tasks, {{"db", nullptr}}).code == hr::errc::missing_dependency);
  auto db3 = meta("db", "3.0.0"), weird = meta("db", "three");
  auto refused = hr::detail::dependency_problem(tasks, {{"db", &db3}});
  CHECK(refused.code == hr::errc::dependency_version);
  CHECK(refused.plugin == "tasks");
  CHECK(refused.message.find("requires 'db <3' but db is 3.0.0") != std::string::npos);
  CHECK(hr::detail::dependency_problem(odd, {{"db", &weird}}).message.find("cannot be compared") != std::string::npos);
  // What a new db would break: tasks, whose requirement it misses.
  CHECK(!hr::detail::broken_dependent("db", vs));
  hr::detail::version_map with3{{"db", &db3}, {"tasks", &tasks}};
  CHECK(hr::detail::broken_dependent("db", with3).plugin == "tasks");
}

TEST_CASE("graph: cycles, orders and closures") {
  auto a = meta("a", "1.0.0", {"b"}), b = meta("b", "1.0.0", {"c"}), c = meta("c", "1.0.0", {"a"});
  auto d = meta("d", "1.0.0"), e = meta("e", "1.0.0", {"d", "x"});
  hr::detail::version_map cyclic{{"a", &a}, {"b", &b}, {"c", &c}, {"d", &d}};
  auto cycle = hr::detail::find_cycle(cyclic);
  CHECK(cycle == std::vector<std::string>{"a", "b", "c"});
  CHECK(hr::detail::cycle_text(cycle) == "a -> b -> c -> a");
  CHECK(hr::detail::find_cycle({{"d", &d}, {"e", &e}}).empty()); // "x" is not there: no edge
  // A diamond: top -> {left, right} -> base.
  auto base = meta("base", "1.0.0"), left = meta("left", "1.0.0", {"base"}), right = meta("right", "1.0.0", {"base"});
  auto top = meta("top", "1.0.0", {"left", "right"});
  std::vector<hr::detail::graph_node> nodes{{"top", &top}, {"left", &left}, {"base", &base}, {"right", &right}};
  auto preds = hr::detail::dependencies_within(nodes);
  CHECK(preds == hr::detail::predecessor_lists{{1, 3}, {2}, {}, {2}});
  CHECK(hr::detail::reversed(preds) == hr::detail::predecessor_lists{{}, {0}, {1, 3}, {0}});
  auto order = hr::detail::topological(preds);
  auto pos = [&](std::size_t i) { return std::find(order.begin(), order.end(), i) - order.begin(); };
  REQUIRE(order.size() == 4);
  for (std::size_t i = 0; i < preds.size(); ++i)
    for (auto p : preds[i]) CHECK(pos(p) < pos(i));
  auto stop = hr::detail::dependents_first(nodes);
  CHECK(stop.front() == 0);
  CHECK(stop.back() == 2);
  hr::detail::version_map all{{"base", &base}, {"left", &left}, {"right", &right}, {"top", &top}, {"d", &d}};
  auto closure = hr::detail::with_dependents({"left"}, all);
  CHECK(closure == std::vector<std::string>{"left", "top"});
  closure = hr::detail::with_dependents({"base"}, all);
  std::sort(closure.begin(), closure.end());
  CHECK(closure == std::vector<std::string>{"base", "left", "right", "top"});
}

// ---- strand primitives ---------------------------------------------------------------

namespace {
template <class F>
void on_strand(F body) {
  asio::io_context io;
  auto strand = asio::make_strand(io.get_executor());
  bool done = false;
  asio::co_spawn(strand, body(hr::detail::strand_t(strand)), [&](std::exception_ptr e) {
    done = true;
    if (e) std::rethrow_exception(e);
  });
  io.run();
  CHECK(done);
}
} // namespace

TEST_CASE("async_event: wakes every waiter; a deadline passes without it") {
  on_strand([](hr::detail::strand_t strand) -> hr::awaitable<void> {
    hr::detail::async_event ev, all_woken;
    int woken = 0;
    for (int i = 0; i < 3; ++i)
      asio::co_spawn(strand, [&]() -> hr::awaitable<void> {
        woken += co_await ev.wait();
        if (woken == 3) all_woken.set();
      }, asio::detached);
    CHECK(!co_await ev.wait_until(hr::detail::deadline_after(5ms))); // not set: times out
    CHECK(woken == 0);
    ev.set();
    CHECK(co_await ev.wait()); // already set: at once
    CHECK(co_await all_woken.wait_until(hr::detail::deadline_after(10s)));
    CHECK(woken == 3);
    CHECK(hr::detail::deadline_after(std::chrono::milliseconds::max()) == hr::detail::clock::time_point::max());
  });
}

TEST_CASE("async_mutex: one owner at a time, waiters served in order") {
  on_strand([](hr::detail::strand_t strand) -> hr::awaitable<void> {
    hr::detail::async_mutex m;
    std::vector<int> order;
    int inside = 0;
    std::vector<hr::awaitable<void>> tasks;
    for (int i = 0; i < 4; ++i)
      tasks.push_back([](hr::detail::async_mutex& m, std::vector<int>& order, int& inside, int i) -> hr::awaitable<void> {
        co_await m.lock();
        CHECK(++inside == 1);
        asio::steady_timer t(co_await asio::this_coro::executor, 1ms);
        co_await t.async_wait(asio::use_awaitable);
        order.push_back(i);
        --inside;
        m.unlock();
      }(m, order, inside, i));
    co_await hr::detail::join(strand, std::move(tasks));
    CHECK(order == std::vector<int>{0, 1, 2, 3});
  });
}

TEST_CASE("run_dag: each node after its predecessors, independent ones at the same time; exceptions reach the caller") {
  on_strand([](hr::detail::strand_t strand) -> hr::awaitable<void> {
    std::vector<std::string> log;
    int running = 0, most = 0;
    auto step = [&](std::size_t i) -> hr::awaitable<void> {
      most = std::max(most, ++running);
      log.push_back("begin " + std::to_string(i));
      asio::steady_timer t(co_await asio::this_coro::executor, 5ms);
      co_await t.async_wait(asio::use_awaitable);
      log.push_back("end " + std::to_string(i));
      --running;
    };
    const hr::detail::predecessor_lists join_last{{}, {}, {0, 1}}; // 2 after 0 and 1
    co_await hr::detail::run_dag(strand, join_last, step);
    CHECK(most == 2);
    auto at = [&](const std::string& s) { return std::find(log.begin(), log.end(), s) - log.begin(); };
    CHECK(at("begin 2") > at("end 0"));
    CHECK(at("begin 2") > at("end 1"));
    bool threw = false, after_ran = false;
    try {
      const hr::detail::predecessor_lists chain{{}, {0}};
      co_await hr::detail::run_dag(strand, chain, [&](std::size_t i) -> hr::awaitable<void> {
        if (i == 0) throw std::runtime_error("node 0");
        after_ran = true; // a successor still runs: it is told its predecessor ended
        co_return;
      });
    } catch (const std::runtime_error& e) {
      threw = std::string(e.what()) == "node 0";
    }
    CHECK(threw);
    CHECK(after_ran);
  });
}

// ---- Linux file checks: one error convention, codes chosen where the failure is found ----

TEST_CASE("shadow copies: each refusal has its code, from the check that found it") {
  auto dir = fs::temp_directory_path() / ("hotreload-unit-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto elf = dir / "whole.so";
  fs::copy_file("/proc/self/exe", elf, fs::copy_options::overwrite_existing);
  CHECK(!hr::detail::copy_file_private(elf, dir / "copy1"));
  // A truncated ELF image (a write in progress).
  std::ifstream in(elf, std::ios::binary);
  std::string bytes(std::istreambuf_iterator<char>(in), {});
  std::ofstream(dir / "half.so", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  auto err = hr::detail::copy_file_private(dir / "half.so", dir / "copy2");
  CHECK(err.code == hr::errc::load_failed);
  CHECK(err.message.starts_with("it is truncated"));
  CHECK(!fs::exists(dir / "copy2"));
  CHECK(hr::detail::copy_file_private(dir, dir / "copy3").code == hr::errc::untrusted_file); // a directory
  fs::permissions(elf, fs::perms::others_write, fs::perm_options::add);
  err = hr::detail::copy_file_private(elf, dir / "copy4");
  CHECK(err.code == hr::errc::untrusted_file);
  CHECK(err.message.find("chmod go-w") != std::string::npos);
  CHECK(hr::detail::copy_file_private(dir / "missing.so", dir / "copy5").code == hr::errc::shadow_copy_failed);
  fs::remove_all(dir);
}

TEST_CASE("ELF findings: read where the library is mapped, they are those of its file") {
  // libstdc++, loaded here: STB_GNU_UNIQUE symbols, and it imports __cxa_thread_atexit_impl.
  void* h = ::dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_NOLOAD);
  REQUIRE(h);
  link_map* lm = nullptr;
  REQUIRE(::dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0);
  const fs::path image = lm->l_name;
  auto from_file = hr::detail::inspect_elf(image);
  CHECK(from_file.unique_count > 0);
  CHECK(from_file.thread_local_destructors);
  auto mapped = hr::detail::inspect_mapped(*lm);
  REQUIRE(mapped);
  CHECK(mapped->unique_count == from_file.unique_count);
  CHECK(mapped->unique_symbols == from_file.unique_symbols);
  CHECK(mapped->thread_local_destructors);
  // By an address inside it; by one that is not (read from the file then).
  auto loaded = hr::detail::inspect_loaded(image, ::dlsym(h, "_ZSt9terminatev"));
  CHECK(loaded.unique_count == from_file.unique_count);
  CHECK(loaded.unique_symbols == from_file.unique_symbols);
  static const int here = 0;
  CHECK(hr::detail::inspect_loaded(image, &here).unique_count == from_file.unique_count);
  ::dlclose(h);
}

TEST_CASE("a library opened for loading: a rename over its path changes nothing; a write into it is seen") {
  auto dir = fs::temp_directory_path() / ("hotreload-unit-open-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "lib.so") << "version one";
  struct ::stat st{};
  auto fd = hr::detail::open_library(dir / "lib.so", {}, st);
  REQUIRE(fd);
  CHECK(!hr::detail::written_since(fd.value, st));
  // Installed the documented way: a new file renamed over the path. The open file is as it was.
  std::ofstream(dir / ".lib.so.tmp") << "version two, longer";
  fs::rename(dir / ".lib.so.tmp", dir / "lib.so");
  CHECK(!hr::detail::written_since(fd.value, st));
  ::close(fd.value);
  // Written in place (cp onto it), right after it was opened: seen, so the probe is repeated
  // on the copy. (A write of the very same size within the same clock tick needs a kernel with
  // multigrain timestamps, 6.13 and later; sizes differ here.)
  fd = hr::detail::open_library(dir / "lib.so", {}, st);
  REQUIRE(fd);
  std::ofstream(dir / "lib.so", std::ios::trunc) << "version three";
  CHECK(hr::detail::written_since(fd.value, st));
  ::close(fd.value);
  CHECK(hr::detail::open_library(dir, {}, st).error.code == hr::errc::untrusted_file); // a directory
  fs::remove_all(dir);
}

TEST_CASE("the background thread runs its jobs in order, at the lowest priority, named for top -H") {
  std::promise<std::pair<std::string, long>> where; // its name and nice value, from inside a job
  std::vector<int> order;
  for (int i = 0; i < 3; ++i) hr::detail::in_background([&order, i] { order.push_back(i); }, hr::detail::wake::later);
  hr::detail::in_background([&] {
    std::string comm, stat;
    std::getline(std::ifstream("/proc/thread-self/comm"), comm);
    std::getline(std::ifstream("/proc/thread-self/stat"), stat);
    // Field 19 is the nice value; the fields after the name (in parentheses) are plain.
    std::istringstream rest(stat.substr(stat.rfind(')') + 2));
    std::string field;
    for (int f = 3; f <= 19 && rest >> field; ++f) {}
    where.set_value({comm, std::stol(field)});
  });
  auto [name, nice] = where.get_future().get();
  CHECK(name == "hotreload-bg");
  CHECK(nice == 19);
  CHECK(order == std::vector<int>{0, 1, 2}); // the later ones ran with the job that woke it, before it
}

TEST_CASE("probe verdicts: an answer is fine; an exit, a signal, a timeout or a lost probe refuses the library") {
  using r = hr::detail::probe_result;
  CHECK(!hr::detail::probe_verdict({r::loaded, 1}, 10ms)); // dlopen's own error comes from the real load
  auto quit = hr::detail::probe_verdict({r::exited, 0}, 10ms); // exit(0) in a static initialiser is no success
  CHECK(quit.code == hr::errc::load_failed);
  CHECK(quit.message.find("exit status 0") != std::string::npos);
  auto sig = hr::detail::probe_verdict({r::signalled, SIGABRT}, 10ms);
  CHECK(sig.code == hr::errc::load_failed);
  CHECK(sig.message.find("SIGABRT") != std::string::npos);
  CHECK(hr::detail::probe_verdict({r::timed_out, 0}, 10ms).message.find("10 ms") != std::string::npos);
  CHECK(hr::detail::probe_verdict({r::lost, 0}, 10ms).code == hr::errc::load_failed);
}

TEST_CASE("log lines: control characters reach the sink escaped, so nothing logged forges a line") {
  std::vector<std::pair<std::string, std::string>> got;
  hr::logger log(hr::log_level::info, [&](const hr::log_record& r) { got.emplace_back(r.plugin, r.message); });
  log.log(hr::log_level::info, "plain", "nothing to escape");
  log.log(hr::log_level::info, "p\n", "a.so\n[ERROR] forged\r\t\x01\x7f");
  log.log(hr::log_level::debug, "x", "below the level\n");
  REQUIRE(got.size() == 2);
  CHECK(got[0] == std::pair<std::string, std::string>{"plain", "nothing to escape"});
  CHECK(got[1].first == "p\\n");
  CHECK(got[1].second == "a.so\\n[ERROR] forged\\r\\t\\x01\\x7f");
}


TEST_CASE("export-dynamic: this test program exports its symbols (abi_host, which does not, is warned)") {
  CHECK(hr::detail::host_exports_symbols());
}

TEST_CASE("interface fingerprints: compared when both sides have one; a difference is refused, naming the header") {
  auto ours = hr::make_abi_tag<test::counter_iface>();
  auto theirs = ours;
  ours.interface_fingerprint = 0x1111;
  ours.fingerprinted_headers = "counter_iface.hpp";
  theirs.interface_fingerprint = 0x2222;
  theirs.fingerprinted_headers = "counter_iface.hpp";
  auto err = hr::detail::abi_problem(ours, theirs);
  CHECK(err.code == hr::errc::abi_mismatch);
  CHECK_MESSAGE(err.message.find("another text of counter_iface.hpp") != std::string::npos, err.message);
  theirs.interface_fingerprint = 0; // a plugin built without the helpers: as before
  CHECK(!hr::detail::abi_problem(ours, theirs));
  theirs.interface_fingerprint = 0x1111;
  CHECK(!hr::detail::abi_problem(ours, theirs));
}

TEST_CASE("hook threads closed while an abandoned call blocks: its thread, the last out, destroys the suspended jobs") {
  // A job suspended on the threads' context holds that context (as every job does, through its
  // executor): a cycle that only destroying the job breaks. close() cannot while a call still
  // blocks a thread; that thread must, when it returns.
  struct sentinel {
    explicit sentinel(std::promise<void>& p) : gone(p) {}
    std::promise<void>& gone;
    ~sentinel() { gone.set_value(); }
  };
  std::promise<void> gone;
  auto destroyed = gone.get_future();
  std::promise<void> entered, release;
  auto released = release.get_future().share();
  {
    hr::detail::hook_threads threads;
    asio::post(threads.executor(), [&entered, released] {
      entered.set_value();
      released.wait(); // plugin code that blocks its thread
    });
    entered.get_future().wait();
    threads.abandoned(); // as the runner does when a call is past its limit
    auto timer = std::make_shared<asio::steady_timer>(threads.executor(), 1h);
    timer->async_wait([timer, keep = threads.context(), s = std::make_shared<sentinel>(gone)](auto) {});
    threads.close();
    CHECK(destroyed.wait_for(0s) == std::future_status::timeout); // the blocked thread may return into it
  }
  release.set_value();
  REQUIRE(destroyed.wait_for(30s) == std::future_status::ready);
}

TEST_CASE("hook threads take work handed to them while they poll (a reload completing), and refuse it asleep") {
  hr::detail::hook_threads threads;
  auto hand = threads.hand();
  auto on_hook_thread = [](std::promise<std::thread::id>& ran) {
    return std::function<void()>([&ran] { ran.set_value(std::this_thread::get_id()); });
  };
  // Run a call on the threads, no burst under way: the thread sleeps between calls, and handing
  // work to it would wake it, so it is left to the caller.
  std::promise<void> ran_alone;
  asio::post(threads.executor(), [&] { ran_alone.set_value(); });
  ran_alone.get_future().wait();
  std::promise<std::thread::id> refused_ran;
  auto refused = on_hook_thread(refused_ran);
  CHECK_FALSE(hand(refused));
  CHECK(refused); // still the caller's

  // During a burst a call runs while its thread polls: work handed from it is taken, and runs
  // on a hook thread after it.
  std::promise<std::thread::id> taken_ran;
  std::promise<std::pair<bool, bool>> taken; // accepted, and left empty
  std::optional<hr::detail::hook_threads::burst> burst;
  burst.emplace(threads);
  asio::post(threads.executor(), [&] {
    auto f = on_hook_thread(taken_ran);
    bool accepted = hand(f);
    taken.set_value({accepted, !f});
  });
  auto [accepted, emptied] = taken.get_future().get();
  if (!threads.contended()) { // else the threads sleep between calls, by design (hook_threads.hpp)
    CHECK(accepted);
    CHECK(emptied);
    CHECK(taken_ran.get_future().get() != std::this_thread::get_id());
  }

  // Just after the burst ends, the threads still poll for a moment: work handed as a reload
  // completes is taken. Checked only when this thread got here within that moment.
  std::atomic<hr::detail::clock::rep> last_call{0};
  asio::post(threads.executor(), [&] { last_call = hr::detail::clock::now().time_since_epoch().count(); });
  while (last_call == 0) std::this_thread::yield(); // not asleep: a wake-up may outlast that moment
  auto ended = hr::detail::clock::time_point(hr::detail::clock::duration(last_call.load()));
  burst.reset();
  for (auto t0 = hr::detail::clock::now(); hr::detail::clock::now() - t0 < 40us;) std::this_thread::yield(); // it sees the end
  std::promise<std::thread::id> after_ran;
  auto after = on_hook_thread(after_ran);
  bool after_accepted = hand(after);
  if (hr::detail::clock::now() - ended < 180us && !threads.contended()) CHECK(after_accepted);
  if (after_accepted) CHECK(after_ran.get_future().get() != std::this_thread::get_id());
  else after();
}
