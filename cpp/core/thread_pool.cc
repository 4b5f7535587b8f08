#include "core/thread_pool.h"

#include "core/error.h"

#include <chrono>
#include <stdexcept>
#include <sched.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GMLM_PAUSE() _mm_pause()
#else
#define GMLM_PAUSE() std::this_thread::yield()
#endif

namespace gmlm {

namespace {
thread_local bool t_in_task = false;
constexpr auto kSpin = std::chrono::microseconds(200);  // idle spin before sleeping
}  // namespace

int ThreadPool::default_threads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = default_threads();
  // Each worker starts from the generation at construction, not from what it reads when the OS first
  // runs it: a pool destroyed before a worker got going would otherwise hide its stop from that
  // worker, and the destructor's join would wait forever.
  const uint64_t start = generation_.load(std::memory_order_acquire);
  try {
    workers_.reserve(static_cast<size_t>(num_threads - 1));
    for (int t = 1; t < num_threads; ++t) workers_.emplace_back([this, t, start] { worker_loop(t, start); });
  } catch (const std::exception& e) {
    // The system refused a thread (limits, memory): stop and join the ones that started, so that the
    // error reaches the caller instead of a pool whose members are destroyed under running workers.
    const size_t started = workers_.size();
    stop_workers();
    throw std::runtime_error(str_cat("intra_threads: could not start thread ", started + 1, " of ", num_threads,
                                     " (", e.what(), "); use fewer threads"));
  }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::run_tasks(const Task& fn, int64_t n, int thread) {
  for (;;) {
    int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= n) break;
    if (!failed_.load(std::memory_order_relaxed)) {
      try {
        fn(i, thread);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
        failed_.store(true, std::memory_order_relaxed);
      }
    }
    finished_.fetch_add(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::worker_loop(int thread, uint64_t seen) {
  t_in_task = true;  // a task that calls parallel_for from a worker runs it serially
  for (;;) {
    // spin, then sleep, until a new generation is published
    auto start = std::chrono::steady_clock::now();
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen) {
      GMLM_PAUSE();
      if (++spins % 64 == 0 && std::chrono::steady_clock::now() - start > kSpin) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_.load(std::memory_order_acquire) != seen; });
        break;
      }
    }
    std::unique_lock<std::mutex> lock(mutex_);
    seen = generation_.load(std::memory_order_acquire);
    if (stop_) return;
    if (!job_) continue;  // that job is already over
    // read the job under the lock: the caller clears job_ once every task is done
    const Task* fn = job_;
    const int64_t n = job_size_;
    inside_.fetch_add(1, std::memory_order_acq_rel);
    lock.unlock();
    run_tasks(*fn, n, thread);
    inside_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallel_for(int64_t n, const Task& fn) {
  if (n <= 0) return;
  std::unique_lock<std::mutex> call(call_mutex_, std::defer_lock);
  if (workers_.empty() || n == 1 || t_in_task || !call.try_lock()) {
    for (int64_t i = 0; i < n; ++i) fn(i, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    job_size_ = n;
    next_.store(0, std::memory_order_relaxed);
    finished_.store(0, std::memory_order_relaxed);
    failed_.store(false, std::memory_order_relaxed);
    error_ = nullptr;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  t_in_task = true;
  run_tasks(fn, n, 0);
  t_in_task = false;
  while (finished_.load(std::memory_order_acquire) < n) GMLM_PAUSE();
  {
    // No worker may enter after this; wait for those inside to leave before fn goes out of scope.
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = nullptr;
  }
  while (inside_.load(std::memory_order_acquire) > 0) GMLM_PAUSE();
  if (error_) {
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

}  // namespace gmlm
