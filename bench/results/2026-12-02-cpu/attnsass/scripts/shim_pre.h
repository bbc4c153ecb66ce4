// Pre-included for NVRTC (no host C++ library): the std:: names FA3's device headers use.
#pragma once
#include <cuda/std/type_traits>
#include <cuda/std/utility>
#include <cuda/std/cstddef>
#include <cuda/std/__algorithm/min.h>
#include <cuda/std/__algorithm/max.h>
namespace std { using cuda::std::conditional_t; using cuda::std::is_same_v; using cuda::std::enable_if_t; using cuda::std::conditional; using cuda::std::is_same; using cuda::std::integral_constant; using cuda::std::remove_cvref_t; using cuda::std::decay_t; using cuda::std::integer_sequence; using cuda::std::make_integer_sequence; using cuda::std::min; using cuda::std::max; using cuda::std::declval; using cuda::std::nullptr_t; }
#ifndef M_LN2
#define M_LN2 0.69314718055994530942
#endif
#ifndef M_LOG2E
#define M_LOG2E 1.4426950408889634074
#endif
