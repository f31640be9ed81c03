// The instruction-set headers the distance kernels use, and which family this build targets: NL_X86 or NL_NEON.
#pragma once

#if defined(__x86_64__) || defined(_M_X64)
#define NL_X86 1
// GCC 12's avx512fintrin.h reads an intentionally undefined register in its mask-load helpers.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#elif defined(__aarch64__)
#define NL_NEON 1
#include <arm_neon.h>
#endif
