// The one compute-type enum of the engine: what the GEMMs compute in (and what the low-precision copies of the
// weights are stored in). The CPU runs float32, bfloat16 and int8 (cpu/lowp.h); cuda float32, float16 and bfloat16
// (cuda/half_weights.h). Python resolves "auto" (engine.resolve_cpu_compute_type) and passes
// the name.
#pragma once

#include <stdexcept>
#include <string>

namespace gmlm {

enum class ComputeType { float32, float16, bfloat16, int8 };

inline const char* compute_type_name(ComputeType t) {
  switch (t) {
    case ComputeType::float16: return "float16";
    case ComputeType::bfloat16: return "bfloat16";
    case ComputeType::int8: return "int8";
    default: return "float32";
  }
}

// The type named `name`, if `device` ("cpu" or "cuda") runs it; ValueError (std::invalid_argument) otherwise.
inline ComputeType compute_type_from_name(const std::string& name, const std::string& device = "cpu") {
  const bool cuda = device == "cuda";
  if (name == "float32") return ComputeType::float32;
  if (name == "bfloat16") return ComputeType::bfloat16;
  if (name == "float16" && cuda) return ComputeType::float16;
  if (name == "int8" && !cuda) return ComputeType::int8;
  throw std::invalid_argument("compute_type must be " +
                              std::string(cuda ? "float32, float16 or bfloat16 on cuda" : "float32, bfloat16 or int8 on cpu") +
                              ", got " + name);
}

}  // namespace gmlm
