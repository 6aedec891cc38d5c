/* What both native kernels share: the instruction-set variant's vector
 * width, and exp, sigmoid and tanh that the compiler can vectorise without
 * -ffast-math.
 *
 * The variant follows the -march flags of the build (rnnlab/native/build.py):
 *   avx512   64-byte vectors (32 registers)
 *   avx2     32-byte vectors (16 registers; AVX2 + FMA)
 *   generic  16-byte vectors (SSE2 on x86-64, NEON on ARM, ...)
 * A 64-byte vector type on AVX2 compiles, but as pairs of registers of
 * which there are only 16: register tiles sized for AVX-512 then spill.
 *
 * The functions keep IEEE semantics: NaN in gives NaN out, +-Inf gives the
 * limits, and no flush-to-zero mode is set. glibc's expf/tanhf are not
 * vectorised without -ffast-math, and the gates would then run one unit at
 * a time. Accuracy: exp within 2 ulp (Cephes' expf polynomial), sigmoid
 * and tanh within a few ulp, outputs below 1.2e-38 returned as 0.
 */
#ifndef RNNLAB_NATIVE_VECMATH_H_
#define RNNLAB_NATIVE_VECMATH_H_

#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#define RNNLAB_ISA "avx512"
#define RNNLAB_VEC_BYTES 64
#elif defined(__AVX2__) && defined(__FMA__)
#define RNNLAB_ISA "avx2"
#define RNNLAB_VEC_BYTES 32
#else
#define RNNLAB_ISA "generic"
#define RNNLAB_VEC_BYTES 16
#endif

#define RNNLAB_LANES (RNNLAB_VEC_BYTES / 4)

typedef float rnnlab_vec __attribute__((vector_size(RNNLAB_VEC_BYTES)));
/* The same, at any 4-byte alignment (unaligned loads and stores). */
typedef float rnnlab_vec_u
    __attribute__((vector_size(RNNLAB_VEC_BYTES), aligned(4)));

static inline rnnlab_vec rnnlab_load(const float* p) {
  return *(const rnnlab_vec_u*)p;
}
static inline void rnnlab_store(float* p, rnnlab_vec v) {
  *(rnnlab_vec_u*)p = v;
}
/* x in every lane. x - 0 is x for every float (-0 stays -0, NaN stays
 * NaN), so the compiler drops the subtraction and emits one broadcast,
 * straight from memory where x comes from there. 0 + x does not fold (it
 * turns -0 into +0): it cost an add and a shuffle per row of a register
 * tile, which held the tile to 2/3 of the FMA peak (Zen 3, AVX2). */
static inline rnnlab_vec rnnlab_splat(float x) {
  return x - (rnnlab_vec){0};
}

static inline uint32_t rnnlab_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}
static inline float rnnlab_from_bits(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

/* exp(x) for x <= 0 (and NaN, -Inf). Branch-free, so that loops over it
 * vectorise: exp(x) = 2^n exp(r), n = round(x / ln 2), |r| <= ln(2) / 2. */
static inline float rnnlab_exp_nonpositive(float x) {
  const float lo = -87.33654f; /* exp(lo) = FLT_MIN, the smallest normal */
  const float xc = x < lo ? lo : x; /* NaN compares false: stays NaN */
  /* Adding 1.5 * 2^23 rounds to an integer, which lands in the low bits. */
  const float shifted = xc * 1.44269504088896341f + 12582912.0f;
  const float n = shifted - 12582912.0f;
  const uint32_t n_bits = rnnlab_bits(shifted) - rnnlab_bits(12582912.0f);
  float r = xc - n * 0.693359375f; /* ln 2 in two parts (Cody-Waite) */
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float scale = rnnlab_from_bits((n_bits + 127u) << 23); /* 2^n */
  return x < lo ? 0.0f : p * scale;
}

/* 1 / (1 + exp(-x)), relatively accurate on both sides. */
static inline float rnnlab_sigmoid(float x) {
  const float e = rnnlab_exp_nonpositive(-__builtin_fabsf(x));
  const float d = 1.0f / (1.0f + e);
  return x >= 0.0f ? d : e * d;
}

static inline float rnnlab_tanh(float x) {
  const float a = __builtin_fabsf(x);
  /* |x| >= 0.625: (1 - e) / (1 + e), e = exp(-2|x|) <= 0.29, no
   * cancellation. Below: Cephes' odd polynomial. */
  const float e = rnnlab_exp_nonpositive(-2.0f * a);
  const float big = (1.0f - e) / (1.0f + e);
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * a + a;
  return __builtin_copysignf(a < 0.625f ? small : big, x);
}

#endif /* RNNLAB_NATIVE_VECMATH_H_ */
