#pragma once
// Scratch pointers for the per-problem math (emms/small_linalg.h, emms/wlsr.h): the routines take any
// pointer type P that indexes like T*. The CPU and a contiguous buffer use T*; the CUDA kernels use
// Strided<T>, element i at p[i * stride], so that the scratch of the threads of a block is interleaved
// (thread j's element i next to thread j + 1's): a warp's loads of "element i" are consecutive addresses,
// coalesced in global memory and free of bank conflicts in shared memory, whatever the per-model size.
#include "emms/macros.h"

namespace emms {

template <typename T>
struct Strided {
  T* p;
  int64_t stride;  // elements between consecutive logical elements

  EMMS_HOST_DEVICE T& operator[](int64_t i) const { return p[i * stride]; }
  EMMS_HOST_DEVICE Strided operator+(int64_t k) const { return Strided{p + k * stride, stride}; }
  EMMS_HOST_DEVICE explicit operator bool() const { return p != nullptr; }
};

// Element type of a scratch pointer.
template <typename P>
struct scratch_elem;
template <typename T>
struct scratch_elem<T*> {
  using type = T;
};
template <typename T>
struct scratch_elem<const T*> {
  using type = T;
};
template <typename T>
struct scratch_elem<Strided<T>> {
  using type = T;
};
template <typename P>
using scratch_elem_t = typename scratch_elem<P>::type;

// Base address and element stride, for routines that take both (emms/simplex.h).
template <typename T>
EMMS_HOST_DEVICE T* scratch_base(T* p) {
  return p;
}
template <typename T>
EMMS_HOST_DEVICE int64_t scratch_stride(T*) {
  return 1;
}
template <typename T>
EMMS_HOST_DEVICE T* scratch_base(Strided<T> p) {
  return p.p;
}
template <typename T>
EMMS_HOST_DEVICE int64_t scratch_stride(Strided<T> p) {
  return p.stride;
}

}  // namespace emms
