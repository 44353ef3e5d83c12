#pragma once
// Lets one header of per-problem math serve the CPU build (plain C++) and the CUDA build (nvcc),
// so both backends run the same arithmetic.
#if defined(__CUDACC__)
#define EMMS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define EMMS_HOST_DEVICE inline
#endif

#include <cstdint>

namespace emms {

// Machine epsilon without <limits> (not usable in device code on every toolchain).
template <typename T>
struct eps_of;
template <>
struct eps_of<double> {
  static constexpr double value = 2.220446049250313e-16;
};
template <>
struct eps_of<float> {
  static constexpr double value = 1.1920928955078125e-07;
};

EMMS_HOST_DEVICE bool is_finite_d(double x) { return x - x == 0.0; }  // false for NaN and +-Inf

}  // namespace emms
