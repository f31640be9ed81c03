#include "int8.h"

#include <cmath>
#include <cstring>

#include "simd.h"

namespace nearline {
namespace {

inline size_t Padded(size_t dims) { return (dims + 3) & ~size_t{3}; }

// Integer dot products of int8 codes: exact, so every kernel gives the scalar one's answer bit for bit.
using DotFn = int32_t (*)(const int8_t*, const int8_t*, size_t);

int32_t DotScalar(const int8_t* x, const int8_t* y, size_t n) {
  int32_t s[4] = {0, 0, 0, 0};
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int j = 0; j < 4; j++) s[j] += int32_t{x[i + j]} * int32_t{y[i + j]};
  }
  for (; i < n; i++) s[0] += int32_t{x[i]} * int32_t{y[i]};
  return (s[0] + s[1]) + (s[2] + s[3]);
}

#if NL_X86
// SSE2 only (the x86-64 baseline): sign-extend to 16 bits, multiply-add pairs into 32 bits.
inline __m128i Widen(__m128i v, bool high) {
  __m128i w = high ? _mm_unpackhi_epi8(v, v) : _mm_unpacklo_epi8(v, v);
  return _mm_srai_epi16(w, 8);
}

int32_t DotSse(const int8_t* x, const int8_t* y, size_t n) {
  __m128i s0 = _mm_setzero_si128(), s1 = _mm_setzero_si128();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i));
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(y + i));
    s0 = _mm_add_epi32(s0, _mm_madd_epi16(Widen(a, false), Widen(b, false)));
    s1 = _mm_add_epi32(s1, _mm_madd_epi16(Widen(a, true), Widen(b, true)));
  }
  __m128i s = _mm_add_epi32(s0, s1);
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  int32_t out = _mm_cvtsi128_si32(s);
  for (; i < n; i++) out += int32_t{x[i]} * int32_t{y[i]};
  return out;
}

#define NL_AVX2 __attribute__((target("avx2")))

// |a| as unsigned times b with a's sign: maddubs sums two such products into 16 bits without saturating,
// since codes stay within [-127, 127] (2 * 127 * 127 < 32767).
NL_AVX2 inline __m256i DotStep256(__m256i s, __m256i a, __m256i b) {
  __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(a), _mm256_sign_epi8(b, a));
  return _mm256_add_epi32(s, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

NL_AVX2 int32_t DotAvx2(const int8_t* x, const int8_t* y, size_t n) {
  __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = DotStep256(s0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + i)));
    s1 = DotStep256(s1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 32)), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + i + 32)));
  }
  if (i + 32 <= n) {
    s0 = DotStep256(s0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + i)));
    i += 32;
  }
  __m256i s = _mm256_add_epi32(s0, s1);
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
  int32_t out = _mm_cvtsi128_si32(h);
  for (; i < n; i++) out += int32_t{x[i]} * int32_t{y[i]};
  return out;
}

// AVX-512BW (byte lanes); a CPU with AVX-512F alone runs the AVX2 kernel for int8.
#define NL_AVX512BW __attribute__((target("avx512f,avx512bw")))

NL_AVX512BW inline __m512i DotStep512(__m512i s, __m512i a, __m512i b) {
  // No sign_epi8 in AVX-512: negate b where a is negative.
  __m512i signedB = _mm512_mask_sub_epi8(b, _mm512_movepi8_mask(a), _mm512_setzero_si512(), b);
  __m512i pairs = _mm512_maddubs_epi16(_mm512_abs_epi8(a), signedB);
  return _mm512_add_epi32(s, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)));
}

NL_AVX512BW int32_t DotAvx512(const int8_t* x, const int8_t* y, size_t n) {
  __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    s0 = DotStep512(s0, _mm512_loadu_si512(x + i), _mm512_loadu_si512(y + i));
    s1 = DotStep512(s1, _mm512_loadu_si512(x + i + 64), _mm512_loadu_si512(y + i + 64));
  }
  if (i + 64 <= n) {
    s0 = DotStep512(s0, _mm512_loadu_si512(x + i), _mm512_loadu_si512(y + i));
    i += 64;
  }
  if (i < n) {
    // Masked-off bytes are neither read nor faulted on.
    __mmask64 m = (n - i) == 64 ? ~__mmask64{0} : ((__mmask64{1} << (n - i)) - 1);
    s1 = DotStep512(s1, _mm512_maskz_loadu_epi8(m, x + i), _mm512_maskz_loadu_epi8(m, y + i));
  }
  return _mm512_reduce_add_epi32(_mm512_add_epi32(s0, s1));
}

bool HasAvx512Bw() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bw");
}
#endif  // NL_X86

#if NL_NEON
int32_t DotNeon(const int8_t* x, const int8_t* y, size_t n) {
  int32x4_t s = vdupq_n_s32(0);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    int8x16_t a = vld1q_s8(x + i), b = vld1q_s8(y + i);
    s = vpadalq_s16(s, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    s = vpadalq_s16(s, vmull_high_s8(a, b));
  }
  int32_t out = vaddvq_s32(s);
  for (; i < n; i++) out += int32_t{x[i]} * int32_t{y[i]};
  return out;
}
#endif  // NL_NEON

struct Coded {
  const int8_t* codes;
  float scale, norm;
};

inline Coded Read(const void* p, size_t padded) {
  const auto* bytes = static_cast<const uint8_t*>(p);
  Coded c{reinterpret_cast<const int8_t*>(bytes), 0, 0};
  std::memcpy(&c.scale, bytes + padded, sizeof(float));
  std::memcpy(&c.norm, bytes + padded + sizeof(float), sizeof(float));
  return c;
}

template <DotFn Dot>
float L2(const void* a, const void* b, const void* p) {
  size_t padded = Padded(*static_cast<const size_t*>(p));
  Coded x = Read(a, padded), y = Read(b, padded);
  float d = x.norm + y.norm - 2.0f * ((x.scale * y.scale) * static_cast<float>(Dot(x.codes, y.codes, padded)));
  return d > 0 ? d : 0;
}

template <DotFn Dot>
float Ip(const void* a, const void* b, const void* p) {
  size_t padded = Padded(*static_cast<const size_t*>(p));
  Coded x = Read(a, padded), y = Read(b, padded);
  return 1.0f - (x.scale * y.scale) * static_cast<float>(Dot(x.codes, y.codes, padded));
}

DotFn Dot(Kernel k) {
  switch (k) {
#if NL_X86
    case Kernel::kAvx512: return HasAvx512Bw() ? DotAvx512 : DotAvx2;
    case Kernel::kAvx2: return DotAvx2;
    case Kernel::kSse: return DotSse;
#endif
#if NL_NEON
    case Kernel::kNeon: return DotNeon;
#endif
    default: return DotScalar;
  }
}

}  // namespace

size_t Int8Bytes(size_t dims) { return Padded(dims) + 2 * sizeof(float); }

void QuantizeInt8(const float* v, size_t dims, void* out) {
  size_t padded = Padded(dims);
  auto* bytes = static_cast<uint8_t*>(out);
  auto* codes = reinterpret_cast<int8_t*>(bytes);
  float max = 0;
  for (size_t i = 0; i < dims; i++) max = std::fmax(max, std::fabs(v[i]));
  float scale = max / 127.0f;
  float inv = max > 0 ? 127.0f / max : 0;
  int32_t sum = 0;
  for (size_t i = 0; i < dims; i++) {
    float c = std::nearbyint(v[i] * inv);
    c = c > 127 ? 127 : (c < -127 ? -127 : c);
    codes[i] = static_cast<int8_t>(c);
    sum += int32_t{codes[i]} * int32_t{codes[i]};
  }
  for (size_t i = dims; i < padded; i++) codes[i] = 0;
  // The same float operations as the kernels' cross term, so L2 between a vector and itself is exactly 0.
  float norm = (scale * scale) * static_cast<float>(sum);
  std::memcpy(bytes + padded, &scale, sizeof(float));
  std::memcpy(bytes + padded + sizeof(float), &norm, sizeof(float));
}

// One instantiation per kernel: the dot product is inlined into the distance hnswlib calls.
DistFn L2Int8Distance(Kernel k) {
  DotFn d = Dot(k);
#if NL_X86
  if (d == DotAvx512) return L2<DotAvx512>;
  if (d == DotAvx2) return L2<DotAvx2>;
  if (d == DotSse) return L2<DotSse>;
#endif
#if NL_NEON
  if (d == DotNeon) return L2<DotNeon>;
#endif
  return L2<DotScalar>;
}

DistFn IpInt8Distance(Kernel k) {
  DotFn d = Dot(k);
#if NL_X86
  if (d == DotAvx512) return Ip<DotAvx512>;
  if (d == DotAvx2) return Ip<DotAvx2>;
  if (d == DotSse) return Ip<DotSse>;
#endif
#if NL_NEON
  if (d == DotNeon) return Ip<DotNeon>;
#endif
  return Ip<DotScalar>;
}

}  // namespace nearline
