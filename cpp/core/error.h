// Errors: exceptions with the offending values in the message, never abort(). The binding maps
// std::invalid_argument to ValueError and everything else to RuntimeError.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace gmlm {

// Concatenate anything streamable into a message.
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace gmlm

// A violated precondition of a public entry point (bad argument from the caller): ValueError.
#define GMLM_CHECK_ARG(cond, ...)                                      \
  do {                                                                 \
    if (!(cond)) throw std::invalid_argument(::gmlm::str_cat(__VA_ARGS__)); \
  } while (0)

// An internal invariant (a bug if it fails): RuntimeError naming the place.
#define GMLM_CHECK(cond, ...)                                                              \
  do {                                                                                     \
    if (!(cond))                                                                           \
      throw std::runtime_error(::gmlm::str_cat(__FILE__, ":", __LINE__, ": check failed: ", \
                                               #cond, " ", ##__VA_ARGS__));               \
  } while (0)
