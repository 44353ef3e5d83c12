# CUDA build of emms_ext (EMMS_WITH_CUDA=ON). The kernels themselves arrive with the CUDA backend issue;
# this file carries the toolchain fixes a CUDA torch needs on machines like ours (README, Building).
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
if(NOT CUDA_TOOLKIT_ROOT_DIR AND CMAKE_CUDA_COMPILER_TOOLKIT_ROOT)
  set(CUDA_TOOLKIT_ROOT_DIR "${CMAKE_CUDA_COMPILER_TOOLKIT_ROOT}")
endif()
if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(ENV{TORCH_CUDA_ARCH_LIST} "9.0")
endif()
set(EMMS_CUDA_ARCHS "$ENV{TORCH_CUDA_ARCH_LIST}")
file(GLOB EMMS_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/csrc/cuda/*.cu
     ${CMAKE_CURRENT_SOURCE_DIR}/csrc/cuda/*_cuda.cpp)
list(APPEND EMMS_SOURCES ${EMMS_CUDA_SOURCES})
