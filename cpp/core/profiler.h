// Where the time goes: wall time per category and the shapes of every GEMM, collected when a
// Profiler is installed on the calling thread (the engine does it when profiling is switched on).
// Ops and layers open a Scope; with no profiler installed a Scope costs one branch.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <tuple>

namespace gmlm {

enum class Phase { gemm, attention, vocab, remask, layers_other, count };
const char* phase_name(Phase p);

struct GemmStat {
  int64_t calls = 0;
  double seconds = 0;
};

class Profiler {
 public:
  std::array<double, static_cast<int>(Phase::count)> seconds{};
  double total_seconds = 0;
  double gemm_flops = 0, vocab_flops = 0;
  // refinement passes: decoder rows computed, and the candidates' positions (rows an exact pass computes)
  int64_t decoder_rows = 0, decoder_positions = 0;
  // thread-seconds inside the vocabulary step's tiles: BLAS calls vs the fused log-softmax/argmax
  double vocab_gemm_thread_seconds = 0, vocab_reduce_thread_seconds = 0;
  std::map<std::tuple<int64_t, int64_t, int64_t>, GemmStat> gemm_shapes;   // (M, N, K)
  std::map<std::tuple<int64_t, int64_t, int64_t>, GemmStat> vocab_shapes;  // (M, V, D) of the vocabulary step

  void reset() { *this = Profiler(); }

  static Profiler* current();
  static void install(Profiler* p);  // on the calling thread; nullptr uninstalls

  // Times a phase, exclusively: time spent in a nested Scope counts for the nested phase only,
  // except inside the vocabulary step, which claims everything it calls.
  class Scope {
   public:
    explicit Scope(Phase phase);
    ~Scope();
    double elapsed() const {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    }
    Profiler* profiler() const { return prof_; }

   private:
    Profiler* prof_;
    Phase phase_;
    Scope* parent_ = nullptr;
    double child_ = 0;
    std::chrono::steady_clock::time_point start_;
  };
};

}  // namespace gmlm
