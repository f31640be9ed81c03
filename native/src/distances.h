// Distance kernels for f32 vectors (squared L2 and 1 - inner product), one per instruction set, chosen at
// run time: the addon is compiled for baseline x86-64 and only the kernel the CPU supports ever runs, so
// the same binary works on an old CPU (SSE) and uses AVX-512 on a new one.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace nearline {

enum class Kernel { kScalar, kSse, kAvx2, kAvx512, kNeon };

// hnswlib's DISTFUNC: (a, b, &dims) -> distance.
using DistFn = float (*)(const void*, const void*, const void*);

const char* KernelName(Kernel k);
bool ParseKernel(const std::string& name, Kernel* out);
bool KernelSupported(Kernel k);
// Every kernel this CPU can run, best first.
std::vector<Kernel> SupportedKernels();
// The kernel every index uses: the best supported one, or NEARLINE_SIMD's. Resolved once per process;
// `error` is set (and the scalar kernel returned) when NEARLINE_SIMD names an unknown or unsupported kernel.
Kernel ActiveKernel(std::string* error);

DistFn L2Distance(Kernel k);
DistFn IpDistance(Kernel k);

}  // namespace nearline
