// CPU kernels below the ops: small loops over rows, vectorised. kernels_impl.inl holds one
// implementation; it is compiled three times (generic x86-64 / any CPU, AVX2+FMA, and AVX-512F on top:
// only attention differs, and it gives the AVX2 results bit for bit) and the table is
// picked at run time from the CPU's features, so one build runs everywhere and fast where it can.
//
// Shapes: n, d = lengths of a row; ld* = row strides in elements.
#pragma once

#include <cstdint>

namespace gmlm::cpu {

struct AttentionHeadArgs {
  const float* q;       // (nq, dh) rows with stride ldq: this head's queries
  int64_t ldq;
  const int32_t* q_pos;  // (nq) query positions inside the segment, or null for 0..nq-1
  const float* k;       // (nk, dh) stride ldk
  const float* v;       // (nk, dh) stride ldv
  int64_t ldk, ldv;
  const float* rel_bias;  // bias by relative position, rel_bias[(key - query) + max_rel], or null
  int64_t max_rel;
  float* out;           // (nq, dh) stride ldo
  int64_t ldo;
  int64_t nq, nk, dh;
  float* scratch;       // attention_scratch_size(nk, dh) floats
};

struct Kernels {
  const char* isa;
  // y[r] = gamma * x[r] / sqrt(mean(x[r]^2) + eps) for rows r in [0, rows)
  void (*rms_norm)(const float* x, int64_t ldx, const float* gamma, float* y, int64_t ldy, int64_t rows,
                   int64_t d, float eps);
  // out[i] = sum_j softmax_j(q_i . k_j + bias(j - pos_i)) v_j  (T5: no 1/sqrt(dh) scaling)
  void (*attention_head)(const AttentionHeadArgs& a);
  // max, first index of the max, and sum_j exp(x_j - max) of a row
  void (*max_argmax_sumexp)(const float* x, int64_t n, float* max, int32_t* argmax, float* sumexp);
  // x = max(x, 0) on a (rows, n) tile
  void (*relu)(float* x, int64_t ld, int64_t rows, int64_t n);
  // y = gelu_tanh(a) * b on (rows, n) tiles
  void (*gelu_mul)(const float* a, const float* b, int64_t ldab, float* y, int64_t ldy, int64_t rows, int64_t n);
  // y = x * s
  void (*scale)(const float* x, float s, float* y, int64_t n);
  // int8 activations (cpu/lowp.h): q = round-half-away(clamp(x / s, -127, 127)) with s = max|x| / 127
  // (1 for an all-zero row); returns s
  float (*quantize_s8)(const float* x, int64_t n, int8_t* q);
  // y = bfloat16(x), round to nearest even (NaN stays NaN)
  void (*to_bf16)(const float* x, int64_t n, uint16_t* y);
  // c = float(q) * s * ws (accumulate: c += ...), the int8 GEMM's dequantisation of one row
  void (*dequant_s32)(const int32_t* q, float s, const float* ws, float* c, int64_t n, bool accumulate);
};

// Scratch floats attention_head needs.
inline int64_t attention_scratch_size(int64_t nk, int64_t dh) { return ((nk + 15) / 16 * 16) * (dh + 8) + 16; }

// The instruction set the engine's own kernels use: the CPU's best, capped by GMLM_CPU_ISA
// ("generic": portable code only, "avx2": no AVX-512), so that a big CPU tests every path.
enum class CpuIsa { generic = 0, avx2 = 1, avx512 = 2 };
CpuIsa cpu_isa();

// The best table for this CPU (chosen once).
const Kernels& kernels();
// The portable table (tests compare it with the vectorised one).
const Kernels& generic_kernels();

namespace generic { Kernels table(); }
namespace avx2 { Kernels table(); bool compiled(); }
namespace avx512 { Kernels table(); bool compiled(); }

}  // namespace gmlm::cpu
