// Requests per second of the manager, from 1 and 4 client processes: counter increments, dict
// sets and gets (one request per op, like a Python Manager proxy call), the same three
// pipelined (one request per op, up to 64 in flight: workloads named *_pipelined), and dict
// sets in WriteBatches of 64 (one request per 64 ops). bench/python_manager.py measures Python's
// multiprocessing.Manager on the same workloads; bench/manager_compare runs both.
//
//   manager_bench [--ops N] [--batch-ops N] [--clients 1,4] [--millrace PATH]
//
// Prints one line per measurement:  RESULT <workload> <clients> <ops/s>
// and first the ceiling of any request/reply design on this machine, as round trips/s of a bare
// 40-byte message between two processes over a Unix socket pair, waited for in the two ways a
// manager call may wait: RESULT socket_roundtrip_blocking 1 (both ends sleep in recv) and
// RESULT socket_roundtrip_spinning 1 (both ends first poll without sleeping for a moment, as
// the manager and its client do).
// The manager is the real `millrace __manager`, started in a temporary directory. Clients are
// forked processes that connect first, then start together when the parent opens the gate;
// the time is from the gate to the last client's exit.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "ipc/manager_client.hpp"
#include "ipc/manager_protocol.hpp"

extern char** environ;

namespace {

using namespace millrace;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

struct Options {
  long ops = 100000;        // per client, one request each
  long batch_ops = 640000;  // per client, in batches of 64
  std::vector<int> clients = {1, 4};
  std::string millrace = std::string(MILLRACE_BIN_DIR) + "/millrace";
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "manager_bench: %s\n", what.c_str());
  std::exit(1);
}

class Manager {
 public:
  Manager(const fs::path& dir, const std::string& millrace) : dir_(dir) {
    std::ofstream(dir / "config.ini") << "; unused\n";
    if (!ipc::create_secret_file(secret())) die("cannot create the secret");
    int ready[2];
    if (::pipe2(ready, O_CLOEXEC) != 0) die("pipe");
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
    env.push_back("MILLRACE_MANAGER=" + socket().string());
    env.push_back("MILLRACE_SECRET=" + secret().string());
    env.push_back("MILLRACE_MANAGER_STATE=" + (dir / "manager.state").string());
    env.push_back("MILLRACE_MANAGER_READY_FD=" + std::to_string(ready[1]));
    std::vector<char*> envp;
    for (std::string& s : env) envp.push_back(s.data());
    envp.push_back(nullptr);
    const std::string config = (dir / "config.ini").string();
    const char* argv[] = {millrace.c_str(), "__manager", config.c_str(), nullptr};
    const int log = ::open((dir / "manager.log").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::dup2(log, 2);
      ::fcntl(ready[1], F_SETFD, 0);
      ::execve(millrace.c_str(), const_cast<char* const*>(argv), envp.data());
      ::_exit(127);
    }
    ::close(log);
    ::close(ready[1]);
    char buf[8];
    const ssize_t n = ::read(ready[0], buf, sizeof buf);
    ::close(ready[0]);
    if (n <= 0) die("the manager did not start (" + millrace + "); see " + (dir / "manager.log").string());
  }
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;
  ~Manager() {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  [[nodiscard]] fs::path socket() const { return dir_ / "manager.sock"; }
  [[nodiscard]] fs::path secret() const { return dir_ / "secret"; }

 private:
  fs::path dir_;
  pid_t pid_ = 0;
};

// Runs `work` in `clients` processes at once and returns the wall time of the whole.
double run_clients(const Manager& manager, int clients,
                   const std::function<bool(ipc::ManagerClient&, int)>& work) {
  int gate[2];
  int ready[2];
  if (::pipe(gate) != 0 || ::pipe(ready) != 0) die("pipe");
  std::vector<pid_t> pids;
  for (int i = 0; i < clients; ++i) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(gate[1]);
      ::close(ready[0]);
      auto client = ipc::ManagerClient::connect(manager.socket(), manager.secret(),
                                                std::chrono::seconds(10));
      if (!client) {
        std::fprintf(stderr, "client: %s\n", client.error().what().c_str());
        ::_exit(2);
      }
      char c = '!';
      if (::write(ready[1], &c, 1) != 1) ::_exit(3);
      if (::read(gate[0], &c, 1) < 0) ::_exit(3);  // EOF: go
      ::_exit(work(*client, i) ? 0 : 4);
    }
    pids.push_back(pid);
  }
  ::close(gate[0]);
  ::close(ready[1]);
  for (int i = 0; i < clients; ++i) {
    char c;
    if (::read(ready[0], &c, 1) != 1) die("a client could not connect");
  }
  ::close(ready[0]);
  const auto start = Clock::now();
  ::close(gate[1]);
  for (pid_t pid : pids) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("a client failed");
  }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Receives exactly `size` bytes. `spin`: poll without sleeping for up to 50us first (yielding
// the CPU to whoever needs it meanwhile), like a manager call waiting for its reply.
bool recv_all(int fd, char* buf, std::size_t size, bool spin) {
  std::size_t got = 0;
  if (spin) {
    const auto until = Clock::now() + std::chrono::microseconds(50);
    while (got < size) {
      const ssize_t n = ::recv(fd, buf + got, size - got, MSG_DONTWAIT);
      if (n > 0) {
        got += static_cast<std::size_t>(n);
      } else if (n == 0 || errno != EAGAIN || Clock::now() >= until) {
        break;
      } else {
        ::sched_yield();
      }
    }
  }
  if (got == size) return true;
  return ::recv(fd, buf + got, size - got, MSG_WAITALL) == static_cast<ssize_t>(size - got);
}

// A bare request/reply over a Unix socket pair: what one synchronous call cannot beat.
double socket_roundtrips(long ops, bool spin) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) die("socketpair");
  const pid_t echo = ::fork();
  if (echo == 0) {
    ::close(sv[0]);
    char buf[40];
    for (;;) {
      if (!recv_all(sv[1], buf, sizeof buf, spin)) ::_exit(0);
      if (::send(sv[1], buf, sizeof buf, 0) != static_cast<ssize_t>(sizeof buf)) ::_exit(0);
    }
  }
  ::close(sv[1]);
  char buf[40] = {};
  const auto start = Clock::now();
  for (long i = 0; i < ops; ++i) {
    if (::send(sv[0], buf, sizeof buf, 0) != static_cast<ssize_t>(sizeof buf) ||
        !recv_all(sv[0], buf, sizeof buf, spin)) {
      die("socket round trip");
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  ::close(sv[0]);
  ::waitpid(echo, nullptr, 0);
  return seconds;
}

// Whether every reply of a pipelined run says the op did what it should (for reads: found it).
enum Expect { kOk, kFound };
constexpr long kCheckEvery = 4096;
bool all_ok(const millrace::Result<std::vector<ipc::OpReply>>& replies, Expect expect) {
  if (!replies) {
    std::fprintf(stderr, "client: %s\n", replies.error().what().c_str());
    return false;
  }
  for (const ipc::OpReply& r : replies.value()) {
    if (r.status != ipc::OpStatus::kOk || (expect == kFound && r.value.empty())) return false;
  }
  return true;
}

void report(const char* workload, int clients, double ops, double seconds) {
  std::printf("RESULT %s %d %.0f\n", workload, clients, ops / seconds);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--ops") {
      o.ops = std::atol(next().c_str());
    } else if (a == "--batch-ops") {
      o.batch_ops = std::atol(next().c_str());
    } else if (a == "--clients") {
      o.clients.clear();
      const std::string list = next();
      for (std::size_t p = 0; p < list.size();) {
        o.clients.push_back(std::atoi(list.c_str() + p));
        const std::size_t comma = list.find(',', p);
        p = comma == std::string::npos ? list.size() : comma + 1;
      }
    } else if (a == "--millrace") {
      o.millrace = next();
    } else {
      std::fprintf(stderr,
                   "usage: manager_bench [--ops N] [--batch-ops N] [--clients 1,4] "
                   "[--millrace PATH]\n");
      return a == "-h" || a == "--help" ? 0 : 2;
    }
  }
  char tmpl[] = "/tmp/millrace-manager-bench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) die("mkdtemp");
  const fs::path dir = tmpl;
  {
    report("socket_roundtrip_blocking", 1, static_cast<double>(o.ops), socket_roundtrips(o.ops, false));
    report("socket_roundtrip_spinning", 1, static_cast<double>(o.ops), socket_roundtrips(o.ops, true));
    Manager manager(dir, o.millrace);
    const long ops = o.ops;
    const long batch_ops = o.batch_ops;
    constexpr int kBatch = 64;
    for (int clients : o.clients) {
      double t = run_clients(manager, clients, [&](ipc::ManagerClient& c, int) {
        auto counter = c.counter("hits");
        for (long k = 0; k < ops; ++k) {
          if (!counter.add(1)) return false;
        }
        return true;
      });
      report("counter_add", clients, static_cast<double>(ops * clients), t);

      t = run_clients(manager, clients, [&](ipc::ManagerClient& c, int id) {
        auto dict = c.dict<std::int64_t>("d");
        const std::string prefix = "c" + std::to_string(id) + "-";
        for (long k = 0; k < ops; ++k) {
          if (!dict.set(prefix + std::to_string(k % 100), k)) return false;
        }
        return true;
      });
      report("dict_set", clients, static_cast<double>(ops * clients), t);

      t = run_clients(manager, clients, [&](ipc::ManagerClient& c, int id) {
        auto dict = c.dict<std::int64_t>("d");
        const std::string prefix = "c" + std::to_string(id) + "-";
        for (long k = 0; k < ops; ++k) {
          auto v = dict.get(prefix + std::to_string(k % 100));
          if (!v || !v->has_value()) return false;
        }
        return true;
      });
      report("dict_get", clients, static_cast<double>(ops * clients), t);

      t = run_clients(manager, clients, [&](ipc::ManagerClient& c, int) {
        ipc::CallPipeline pipe = c.pipeline();
        for (long k = 0; k < ops; ++k) {
          if (!pipe.counter_add("hits")) return false;
          if ((k + 1) % kCheckEvery == 0 && !all_ok(pipe.flush(), kOk)) return false;
        }
        return all_ok(pipe.flush(), kOk);
      });
      report("counter_add_pipelined", clients, static_cast<double>(ops * clients), t);

      t = run_clients(manager, clients, [&](ipc::ManagerClient& c, int id) {
        ipc::CallPipeline pipe = c.pipeline();
        const std::string prefix = "p" + std::to_string(id) + "-";
        for (long k = 0; k < ops; ++k) {
          if (!pipe.dict_set<std::int64_t>("d", prefix + std::to_string(k % 100), k)) return false;
          if ((k + 1) % kCheckEvery == 0 && !all_ok(pipe.flush(), kOk)) return false;
        }
        return all_ok(pipe.flush(), kOk);
      });
      report("dict_set_pipelined", clients, static_cast<double>(ops * clients), t);

      t = run_clients(manager, clients, [&](ipc::ManagerClient& c, int id) {
        ipc::CallPipeline pipe = c.pipeline();
        const std::string prefix = "p" + std::to_string(id) + "-";
        for (long k = 0; k < ops; ++k) {
          if (!pipe.dict_get<std::int64_t>("d", prefix + std::to_string(k % 100))) return false;
          if ((k + 1) % kCheckEvery == 0 && !all_ok(pipe.flush(), kFound)) return false;
        }
        return all_ok(pipe.flush(), kFound);
      });
      report("dict_get_pipelined", clients, static_cast<double>(ops * clients), t);

      t = run_clients(manager, clients, [&](ipc::ManagerClient& c, int id) {
        ipc::WriteBatch batch;
        const std::string prefix = "b" + std::to_string(id) + "-";
        for (long k = 0; k < batch_ops; k += kBatch) {
          for (int j = 0; j < kBatch; ++j) {
            batch.dict_set("d", prefix + std::to_string((k + j) % 100), k + j);
          }
          if (!c.write(batch)) return false;
        }
        return true;
      });
      report("dict_set_batch64", clients, static_cast<double>(batch_ops * clients), t);
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}
