// The engine's only threads: a fixed pool of (intra_threads - 1) workers plus the calling thread.
// BLAS calls run single-threaded inside pool tasks (OpenBLAS's own pool stays idle), so BLAS and the
// engine's kernels share the same intra_threads cores without oversubscription.
//
// parallel_for hands out task indices dynamically (an atomic counter), so a core slowed by another
// process does not hold the others up. Idle workers spin briefly (new work usually follows within
// microseconds in the decoding loop) and then sleep on a condition variable.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace gmlm {

class ThreadPool {
 public:
  using Task = std::function<void(int64_t task, int thread)>;

  // num_threads in [0, max_threads()] (0 = the number of cores this process may run on). Throws
  // std::runtime_error if the system refuses a thread (the started ones are stopped first).
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Run fn(task, thread) for every task in [0, n), thread in [0, num_threads()). Returns when all
  // tasks ended; rethrows the first exception thrown by a task (the others are skipped). Calls
  // from inside a task, or concurrent calls from several threads, run serially in the caller.
  void parallel_for(int64_t n, const Task& fn);

  static int default_threads();
  // The most threads a pool may have: 4 x default_threads(). The engine is compute-bound, so threads
  // beyond the cores only slow it down (1000 threads on 2 cores: 27 s for one sentence instead of 0.01).
  static int max_threads() { return 4 * default_threads(); }

 private:
  void worker_loop(int thread, uint64_t seen);
  void stop_workers();  // tell every started worker to stop, and join it
  void run_tasks(const Task& fn, int64_t n, int thread);

  std::vector<std::thread> workers_;
  std::mutex mutex_;               // guards job publication and sleeping
  std::condition_variable wake_;
  std::mutex call_mutex_;          // one parallel_for at a time
  std::atomic<uint64_t> generation_{0};
  bool stop_ = false;

  // The current job (valid while job_ != nullptr).
  const Task* job_ = nullptr;
  int64_t job_size_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int64_t> finished_{0};
  std::atomic<int> inside_{0};     // workers that entered the current job
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
  std::mutex error_mutex_;
};

}  // namespace gmlm
