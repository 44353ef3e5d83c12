# CUDA build of emms_ext (EMMS_WITH_CUDA=ON): the torch-free kernels (csrc/cuda/*.cu) become an object
# library compiled by nvcc alone; the tensor glue (csrc/cuda/*_cuda.cpp) joins the _C sources. Fixes a
# CUDA torch needs on machines like ours are noted inline (README, Building).
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
# torch's CMake still reads the legacy variable.
if(NOT CUDA_TOOLKIT_ROOT_DIR AND CMAKE_CUDA_COMPILER_TOOLKIT_ROOT)
  set(CUDA_TOOLKIT_ROOT_DIR "${CMAKE_CUDA_COMPILER_TOOLKIT_ROOT}")
endif()
# One arch list for torch's CMake and for ours: TORCH_CUDA_ARCH_LIST ("9.0" = H100/H200) -> "90".
if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST} OR "$ENV{TORCH_CUDA_ARCH_LIST}" STREQUAL "")
  set(ENV{TORCH_CUDA_ARCH_LIST} "9.0")
endif()
set(EMMS_CUDA_ARCHS "$ENV{TORCH_CUDA_ARCH_LIST}")
string(REPLACE " " ";" _archs "${EMMS_CUDA_ARCHS}")
set(EMMS_CMAKE_CUDA_ARCHS "")
foreach(_a IN LISTS _archs)
  string(REPLACE "+PTX" "" _a "${_a}")
  string(REPLACE "." "" _a "${_a}")
  if(_a)
    list(APPEND EMMS_CMAKE_CUDA_ARCHS "${_a}")
  endif()
endforeach()

file(GLOB EMMS_CUDA_KERNELS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/csrc/cuda/*.cu)
add_library(emms_cuda_kernels OBJECT ${EMMS_CUDA_KERNELS})
target_include_directories(emms_cuda_kernels PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/csrc/include)
set_target_properties(emms_cuda_kernels PROPERTIES POSITION_INDEPENDENT_CODE ON
                      CUDA_ARCHITECTURES "${EMMS_CMAKE_CUDA_ARCHS}")

file(GLOB EMMS_CUDA_GLUE CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/csrc/cuda/*_cuda.cpp)
list(APPEND EMMS_SOURCES ${EMMS_CUDA_GLUE})
