#include "distances.h"

#include <cstdlib>
#include <mutex>

#include "simd.h"

namespace nearline {
namespace {

inline size_t Dims(const void* p) { return *static_cast<const size_t*>(p); }

// The reference: four independent sums so it is not needlessly slow, no intrinsics.
float L2Scalar(const void* a, const void* b, const void* p) {
  const float* x = static_cast<const float*>(a);
  const float* y = static_cast<const float*>(b);
  size_t n = Dims(p), i = 0;
  float s[4] = {0, 0, 0, 0};
  for (; i + 4 <= n; i += 4) {
    for (int j = 0; j < 4; j++) {
      float d = x[i + j] - y[i + j];
      s[j] += d * d;
    }
  }
  for (; i < n; i++) {
    float d = x[i] - y[i];
    s[0] += d * d;
  }
  return (s[0] + s[1]) + (s[2] + s[3]);
}

float DotScalar(const float* x, const float* y, size_t n) {
  size_t i = 0;
  float s[4] = {0, 0, 0, 0};
  for (; i + 4 <= n; i += 4) {
    for (int j = 0; j < 4; j++) s[j] += x[i + j] * y[i + j];
  }
  for (; i < n; i++) s[0] += x[i] * y[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

float IpScalar(const void* a, const void* b, const void* p) {
  return 1.0f - DotScalar(static_cast<const float*>(a), static_cast<const float*>(b), Dims(p));
}

#if NL_X86
// SSE2 is part of x86-64 itself: no target attribute needed.
inline float Sum128(__m128 v) {
  __m128 hi = _mm_movehl_ps(v, v);
  __m128 s = _mm_add_ps(v, hi);
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

float L2Sse(const void* a, const void* b, const void* p) {
  const float* x = static_cast<const float*>(a);
  const float* y = static_cast<const float*>(b);
  size_t n = Dims(p), i = 0;
  __m128 s0 = _mm_setzero_ps(), s1 = _mm_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    __m128 d0 = _mm_sub_ps(_mm_loadu_ps(x + i), _mm_loadu_ps(y + i));
    __m128 d1 = _mm_sub_ps(_mm_loadu_ps(x + i + 4), _mm_loadu_ps(y + i + 4));
    s0 = _mm_add_ps(s0, _mm_mul_ps(d0, d0));
    s1 = _mm_add_ps(s1, _mm_mul_ps(d1, d1));
  }
  if (i + 4 <= n) {
    __m128 d = _mm_sub_ps(_mm_loadu_ps(x + i), _mm_loadu_ps(y + i));
    s0 = _mm_add_ps(s0, _mm_mul_ps(d, d));
    i += 4;
  }
  float s = Sum128(_mm_add_ps(s0, s1));
  for (; i < n; i++) {
    float d = x[i] - y[i];
    s += d * d;
  }
  return s;
}

float IpSse(const void* a, const void* b, const void* p) {
  const float* x = static_cast<const float*>(a);
  const float* y = static_cast<const float*>(b);
  size_t n = Dims(p), i = 0;
  __m128 s0 = _mm_setzero_ps(), s1 = _mm_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    s0 = _mm_add_ps(s0, _mm_mul_ps(_mm_loadu_ps(x + i), _mm_loadu_ps(y + i)));
    s1 = _mm_add_ps(s1, _mm_mul_ps(_mm_loadu_ps(x + i + 4), _mm_loadu_ps(y + i + 4)));
  }
  if (i + 4 <= n) {
    s0 = _mm_add_ps(s0, _mm_mul_ps(_mm_loadu_ps(x + i), _mm_loadu_ps(y + i)));
    i += 4;
  }
  float s = Sum128(_mm_add_ps(s0, s1));
  for (; i < n; i++) s += x[i] * y[i];
  return 1.0f - s;
}

#define NL_AVX2 __attribute__((target("avx2,fma")))

NL_AVX2 inline float Sum256(__m256 v) { return Sum128(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1))); }

// Lanes below `rest` (1..7) set: maskload reads only those, so the tail never touches memory past the vector.
NL_AVX2 inline __m256i TailMask256(size_t rest) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rest)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

NL_AVX2 float L2Avx2(const void* a, const void* b, const void* p) {
  const float* x = static_cast<const float*>(a);
  const float* y = static_cast<const float*>(b);
  size_t n = Dims(p), i = 0;
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
    __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8));
    s0 = _mm256_fmadd_ps(d0, d0, s0);
    s1 = _mm256_fmadd_ps(d1, d1, s1);
  }
  if (i + 8 <= n) {
    __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
    s0 = _mm256_fmadd_ps(d, d, s0);
    i += 8;
  }
  if (i < n) {
    __m256i m = TailMask256(n - i);
    __m256 d = _mm256_sub_ps(_mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m));
    s1 = _mm256_fmadd_ps(d, d, s1);
  }
  return Sum256(_mm256_add_ps(s0, s1));
}

NL_AVX2 float IpAvx2(const void* a, const void* b, const void* p) {
  const float* x = static_cast<const float*>(a);
  const float* y = static_cast<const float*>(b);
  size_t n = Dims(p), i = 0;
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
  }
  if (i + 8 <= n) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
    i += 8;
  }
  if (i < n) {
    __m256i m = TailMask256(n - i);
    s1 = _mm256_fmadd_ps(_mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m), s1);
  }
  return 1.0f - Sum256(_mm256_add_ps(s0, s1));
}

#define NL_AVX512 __attribute__((target("avx512f")))

NL_AVX512 float L2Avx512(const void* a, const void* b, const void* p) {
  const float* x = static_cast<const float*>(a);
  const float* y = static_cast<const float*>(b);
  size_t n = Dims(p), i = 0;
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  for (; i + 32 <= n; i += 32) {
    __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i));
    __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16));
    s0 = _mm512_fmadd_ps(d0, d0, s0);
    s1 = _mm512_fmadd_ps(d1, d1, s1);
  }
  if (i + 16 <= n) {
    __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i));
    s0 = _mm512_fmadd_ps(d, d, s0);
    i += 16;
  }
  if (i < n) {
    // Masked-off lanes are neither read nor faulted on.
    __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i));
    s1 = _mm512_fmadd_ps(d, d, s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

NL_AVX512 float IpAvx512(const void* a, const void* b, const void* p) {
  const float* x = static_cast<const float*>(a);
  const float* y = static_cast<const float*>(b);
  size_t n = Dims(p), i = 0;
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), s1);
  }
  if (i + 16 <= n) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), s0);
    i += 16;
  }
  if (i < n) {
    __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), s1);
  }
  return 1.0f - _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}
#endif  // NL_X86

#if NL_NEON
float L2Neon(const void* a, const void* b, const void* p) {
  const float* x = static_cast<const float*>(a);
  const float* y = static_cast<const float*>(b);
  size_t n = Dims(p), i = 0;
  float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0);
  for (; i + 8 <= n; i += 8) {
    float32x4_t d0 = vsubq_f32(vld1q_f32(x + i), vld1q_f32(y + i));
    float32x4_t d1 = vsubq_f32(vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
    s0 = vfmaq_f32(s0, d0, d0);
    s1 = vfmaq_f32(s1, d1, d1);
  }
  float s = vaddvq_f32(vaddq_f32(s0, s1));
  for (; i < n; i++) {
    float d = x[i] - y[i];
    s += d * d;
  }
  return s;
}

float IpNeon(const void* a, const void* b, const void* p) {
  const float* x = static_cast<const float*>(a);
  const float* y = static_cast<const float*>(b);
  size_t n = Dims(p), i = 0;
  float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0);
  for (; i + 8 <= n; i += 8) {
    s0 = vfmaq_f32(s0, vld1q_f32(x + i), vld1q_f32(y + i));
    s1 = vfmaq_f32(s1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
  }
  float s = vaddvq_f32(vaddq_f32(s0, s1));
  for (; i < n; i++) s += x[i] * y[i];
  return 1.0f - s;
}
#endif  // NL_NEON

}  // namespace

const char* KernelName(Kernel k) {
  switch (k) {
    case Kernel::kAvx512: return "avx512";
    case Kernel::kAvx2: return "avx2";
    case Kernel::kSse: return "sse";
    case Kernel::kNeon: return "neon";
    case Kernel::kScalar: break;
  }
  return "scalar";
}

bool ParseKernel(const std::string& name, Kernel* out) {
  for (Kernel k : {Kernel::kScalar, Kernel::kSse, Kernel::kAvx2, Kernel::kAvx512, Kernel::kNeon}) {
    if (name == KernelName(k)) {
      *out = k;
      return true;
    }
  }
  return false;
}

bool KernelSupported(Kernel k) {
  switch (k) {
    case Kernel::kScalar: return true;
#if NL_X86
    case Kernel::kSse: return true;
    // libgcc's checks include the OS saving the wider registers (XGETBV), not only CPUID bits.
    case Kernel::kAvx2: __builtin_cpu_init(); return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Kernel::kAvx512: __builtin_cpu_init(); return __builtin_cpu_supports("avx512f");
#endif
#if NL_NEON
    case Kernel::kNeon: return true;
#endif
    default: return false;
  }
}

std::vector<Kernel> SupportedKernels() {
  std::vector<Kernel> out;
  for (Kernel k : {Kernel::kAvx512, Kernel::kAvx2, Kernel::kNeon, Kernel::kSse, Kernel::kScalar}) {
    if (KernelSupported(k)) out.push_back(k);
  }
  return out;
}

Kernel ActiveKernel(std::string* error) {
  static std::once_flag once;
  static Kernel active = Kernel::kScalar;
  static std::string problem;
  std::call_once(once, [] {
    const char* forced = std::getenv("NEARLINE_SIMD");
    if (forced == nullptr || *forced == '\0') {
      active = SupportedKernels().front();
      return;
    }
    Kernel k;
    if (!ParseKernel(forced, &k)) {
      problem = std::string("NEARLINE_SIMD=") + forced + " is not one of avx512, avx2, sse, neon, scalar";
    } else if (!KernelSupported(k)) {
      problem = std::string("NEARLINE_SIMD=") + forced + " but this CPU cannot run that kernel";
    } else {
      active = k;
    }
  });
  if (error != nullptr) *error = problem;
  return active;
}

DistFn L2Distance(Kernel k) {
  switch (k) {
#if NL_X86
    case Kernel::kAvx512: return L2Avx512;
    case Kernel::kAvx2: return L2Avx2;
    case Kernel::kSse: return L2Sse;
#endif
#if NL_NEON
    case Kernel::kNeon: return L2Neon;
#endif
    default: return L2Scalar;
  }
}

DistFn IpDistance(Kernel k) {
  switch (k) {
#if NL_X86
    case Kernel::kAvx512: return IpAvx512;
    case Kernel::kAvx2: return IpAvx2;
    case Kernel::kSse: return IpSse;
#endif
#if NL_NEON
    case Kernel::kNeon: return IpNeon;
#endif
    default: return IpScalar;
  }
}

}  // namespace nearline
