// cudaGridDependencySynchronize() is declared by the CUDA runtime's device headers, which NVRTC
// lacks here; it lowers to griddepcontrol.wait on sm_90.
#pragma once
static __device__ __forceinline__ void cudaGridDependencySynchronize() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }
