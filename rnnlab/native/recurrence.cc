// The recurrent loops of a training step, forward and backward, as XLA FFI
// custom calls on the CPU (implementation="native", rnnlab/native/recurrence.py).
//
// Why: XLA runs a scan's step as a chain of small operations (an in-loop
// [B, H] x [H, G*H] matmul, slicing, the gate fusion, stacking), each on one
// core with per-operation overhead, and reads the recurrent weights from L3
// every step. Here each thread owns a slice of the hidden units: it keeps
// its columns of W_h (forward) and rows of W_h^T (backward) packed in its
// own L2, runs the matmul for its slice with register tiles, applies the
// gates to its units, and meets the other threads at one barrier per step.
//
// Shapes: B batch, T time, H hidden, G gates (LSTM i,f,g,o; GRU r,z,n,
// reset after; Elman 1), gate-major columns g*H + u as in cells.py. All
// sequences are batch-major, as the model holds them, so that XLA needs no
// transposes around the calls; attribute reverse=1 runs time backwards.
//
// Forward  (xp [B,T,GH] = X W_x, b [GH], w_h [H,GH], h0 [B,H], c0 [B,H],
//           b_hn [H]) -> hs [B,T,H], aux [B,T,H], acts [B,T,GH]
//   The bias b is added in the gates: XLA would spend a pass over xp on it.
//   aux: LSTM cell states c_t; GRU hn_t + b_hn (the candidate's hidden
//   term); Elman unused. acts: LSTM/GRU gate activations; Elman unused.
// Backward (w_h, h0, c0, hs, aux, acts, d_hs [B,T,H], d_hT [B,H],
//           d_cT [B,H]) -> d_xp [B,T,GH], d_hp [B,T,GH] (GRU; [1] for the
//           others, which use d_xp), d_h0 [B,H], d_c0 [B,H], d_bhn [H]
// The weight gradients are large matmuls left to XLA: dW_h = H_prev^T d_hp.
//
// Every entry checks its buffers' shapes against each other (dtypes and
// ranks are checked by the FFI binding) before it touches memory.
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "barrier.h"
#include "vecmath.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

enum Cell { kRnnTanh = 0, kRnnRelu = 1, kLstm = 2, kGru = 3 };
int Gates(int cell) { return cell == kLstm ? 4 : cell == kGru ? 3 : 1; }

using Vec = rnnlab_vec;
constexpr int kLanes = RNNLAB_LANES;

// Register tile per variant: kTileRows rows x kVecs vectors of
// accumulators, plus kVecs panel loads and a broadcast, within the
// register file (-D overrides them for tuning runs).
//   avx512: 8 x 3 = 24 of 32 registers. Against 6 x 4 it reads a quarter
//     less of the panel per FMA and covers batches of 32 and 64 without a
//     remainder (5-12% faster per matmul, Xeon, docs/benchmarks.md).
//   avx2: 6 x 2 = 12 of 16, plus 2 panel vectors and a broadcast, so the
//     panel stays in registers (4 x 3 left no room: every FMA reloaded its
//     panel vector). With rnnlab_splat, 1.25-1.4x the old 4 x 3 per
//     matmul on Zen 3 (docs/benchmarks.md); the shape of
//     BLIS's and OpenBLAS's Haswell/Zen SGEMM kernels (6 x 16 floats).
//   generic: 6 x 2 = 12 of 16 (SSE2; NEON has 32).
#if RNNLAB_VEC_BYTES == 64
#define RNNLAB_DEFAULT_ROWS 8
#define RNNLAB_DEFAULT_VECS 3
#elif RNNLAB_VEC_BYTES == 32
#define RNNLAB_DEFAULT_ROWS 6
#define RNNLAB_DEFAULT_VECS 2
#else
#define RNNLAB_DEFAULT_ROWS 6
#define RNNLAB_DEFAULT_VECS 2
#endif
#ifndef RNNLAB_TILE_ROWS
#define RNNLAB_TILE_ROWS RNNLAB_DEFAULT_ROWS
#endif
#ifndef RNNLAB_TILE_VECS
#define RNNLAB_TILE_VECS RNNLAB_DEFAULT_VECS
#endif
constexpr int kTileRows = RNNLAB_TILE_ROWS;
constexpr int kVecs = RNNLAB_TILE_VECS;
constexpr int kBlock = kVecs * kLanes;  // columns per packed block
static_assert(kTileRows >= 1 && kTileRows <= 8, "tile rows in 1..8");
static_assert(kVecs >= 1 && kVecs <= 4, "tile vectors in 1..4");

int Round16(int n) { return (n + 15) / 16 * 16; }

// [u0, u1): thread tid's share of n, in multiples of 16 (whole cache lines).
void Share(int n, int tid, int nt, int* u0, int* u1) {
  int per = Round16((n + nt - 1) / nt);
  *u0 = std::min(n, tid * per);
  *u1 = std::min(n, (tid + 1) * per);
}

// This thread's slice [u0, u0 + w) of H hidden units, shared over the team
// OpenMP gave (OMP_THREAD_LIMIT may make it smaller than asked).
struct Units {
  int u0, w;
};
Units MyUnits(int H) {
  int u0, u1;
  Share(H, omp_get_thread_num(), omp_get_num_threads(), &u0, &u1);
  return {u0, u1 - u0};
}

// A thread's [rows, cols] operand, stored as 64-byte aligned column blocks
// of kBlock (the last padded with zeros to a multiple of 16), each block
// [rows, width] contiguous, so that a tile streams it in order.
struct Packed {
  float* w = nullptr;
  int rows = 0, cols = 0, padded = 0;
  ~Packed() { free(w); }
};

template <typename Src>
bool Pack(Packed* p, int rows, int cols, Src src) {
  p->rows = rows, p->cols = cols, p->padded = Round16(cols);
  size_t bytes = (size_t(rows) * p->padded * sizeof(float) + 63) / 64 * 64;
  p->w = static_cast<float*>(aligned_alloc(64, bytes));
  if (!p->w) return false;
  memset(p->w, 0, bytes);
  for (int k0 = 0; k0 < cols; k0 += kBlock) {
    const int width = std::min(kBlock, p->padded - k0);
    float* blk = p->w + size_t(rows) * k0;
    for (int i = 0; i < rows; ++i)
      for (int k = k0; k < std::min(k0 + width, cols); ++k)
        blk[size_t(i) * width + (k - k0)] = src(i, k);
  }
  return true;
}

// C[r, 0:kLanes*NV) = A[r, 0:K) @ blk for r < R, in registers.
template <int R, int NV>
inline void Tile(const float* a, int lda, int k_len, const float* blk,
                 float* c, int ldc) {
  Vec acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = Vec{};
  for (int k = 0; k < k_len; ++k) {
    const float* b = blk + size_t(k) * kLanes * NV;
    Vec bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = rnnlab_load(b + kLanes * v);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Vec x = rnnlab_splat(a[size_t(r) * lda + k]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] += x * bv[v];
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      rnnlab_store(c + size_t(r) * ldc + kLanes * v, acc[r][v]);
}

// The rows left after whole tiles: one smaller tile of `rows` rows.
template <int NV, int R = kTileRows - 1>
void RemainderTile(int rows, const float* a, int lda, int k_len,
                   const float* blk, float* c, int ldc) {
  if constexpr (R >= 1) {
    if (rows == R) return Tile<R, NV>(a, lda, k_len, blk, c, ldc);
    RemainderTile<NV, R - 1>(rows, a, lda, k_len, blk, c, ldc);
  }
}

template <int NV>
void Tiles(const float* a, int lda, int m, int k_len, const float* blk,
           float* c, int ldc) {
  int r = 0;
  for (; r + kTileRows <= m; r += kTileRows)
    Tile<kTileRows, NV>(a + size_t(r) * lda, lda, k_len, blk,
                        c + size_t(r) * ldc, ldc);
  RemainderTile<NV>(m - r, a + size_t(r) * lda, lda, k_len, blk,
                    c + size_t(r) * ldc, ldc);
}

// The last block may be narrower: NV vectors down to 1.
template <int NV = kVecs>
void BlockTiles(int vecs, const float* a, int lda, int m, int k_len,
                const float* blk, float* c, int ldc) {
  if constexpr (NV >= 1) {
    if (vecs == NV) return Tiles<NV>(a, lda, m, k_len, blk, c, ldc);
    BlockTiles<NV - 1>(vecs, a, lda, m, k_len, blk, c, ldc);
  }
}

// C [m, p.padded] (row stride ldc) = A [m, p.rows] (row stride lda) @ p.
void MatMul(const float* a, int lda, int m, const Packed& p, float* c,
            int ldc) {
  for (int k0 = 0; k0 < p.cols; k0 += kBlock) {
    const int width = std::min(kBlock, p.padded - k0);
    BlockTiles(width / kLanes, a, lda, m, p.rows, p.w + size_t(p.rows) * k0,
               c + k0, ldc);
  }
}

struct Dims {
  int T, B, H, G;
  size_t GH() const { return size_t(G) * H; }
};

int Threads(int requested, int H) {
  // At least 16 units each; more threads than that only add barriers.
  return std::max(1, std::min(requested, H / 16));
}

// Shape checking: each buffer's dimensions against the expected ones.
using Shape = std::vector<int64_t>;

std::string Str(ffi::Span<const int64_t> dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i)
    s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// "" if every buffer has its expected shape, else what is wrong.
template <typename... Named>
std::string Mismatch(const char* entry, Named... named) {
  std::string error;
  auto one = [&](const auto& n) {
    const auto& [name, dims, want] = n;
    if (!error.empty()) return;
    bool same = dims.size() == want.size();
    for (size_t i = 0; same && i < want.size(); ++i) same = dims[i] == want[i];
    if (!same)
      error = std::string(entry) + ": " + name + " has shape " + Str(dims) +
              ", expected " + Str(ffi::Span<const int64_t>(want));
  };
  (one(named), ...);
  return error;
}

template <typename B>
auto Named(const char* name, const B& buffer, Shape want) {
  return std::make_tuple(name, buffer.dimensions(), std::move(want));
}

// Dimensions from the leading buffer: all sizes (and the products the
// loops form) must fit in an int.
ffi::Error CheckSizes(const char* entry, int32_t cell,
                      std::initializer_list<int64_t> dims, int64_t gates) {
  if (cell < kRnnTanh || cell > kGru)
    return ffi::Error::InvalidArgument(std::string(entry) + ": cell code " +
                                       std::to_string(cell) +
                                       " is not one of 0-3");
  int64_t product = gates;
  for (int64_t d : dims) {
    if (d < 1 || d > INT_MAX / product)
      return ffi::Error::InvalidArgument(
          std::string(entry) + ": sizes too large or empty (each dimension "
          "and B*T*G*H must be in 1.." + std::to_string(INT_MAX) + ")");
    product *= d;
  }
  return ffi::Error::Success();
}

ffi::Error Forward(int32_t cell, int32_t reverse, int32_t threads,
                   ffi::BufferR3<ffi::F32> xp, ffi::BufferR1<ffi::F32> b_x,
                   ffi::BufferR2<ffi::F32> w_h, ffi::BufferR2<ffi::F32> h0,
                   ffi::BufferR2<ffi::F32> c0, ffi::BufferR1<ffi::F32> b_hn,
                   ffi::ResultBufferR3<ffi::F32> hs,
                   ffi::ResultBufferR3<ffi::F32> aux,
                   ffi::ResultBufferR3<ffi::F32> acts) {
  constexpr const char* kEntry = "rnnlab_recurrence_fwd";
  const auto xd = xp.dimensions();
  const int64_t B = xd[0], T = xd[1], H = w_h.dimensions()[0];
  const int64_t G = Gates(cell);
  if (auto e = CheckSizes(kEntry, cell, {B, T, H}, G); e.failure()) return e;
  const std::string bad = Mismatch(
      kEntry, Named("xp", xp, {B, T, G * H}), Named("b", b_x, {G * H}),
      Named("w_h", w_h, {H, G * H}), Named("h0", h0, {B, H}),
      Named("c0", c0, {B, H}), Named("b_hn", b_hn, {H}),
      Named("hs", *hs, {B, T, H}), Named("aux", *aux, {B, T, H}),
      Named("acts", *acts, {B, T, G * H}));
  if (!bad.empty()) return ffi::Error::InvalidArgument(bad);
  const Dims d{int(T), int(B), int(H), int(G)};
  const float* X = xp.typed_data();
  const float* BX = b_x.typed_data();
  const float* W = w_h.typed_data();
  const float* H0 = h0.typed_data();
  const float* C0 = c0.typed_data();
  const float* BN = b_hn.typed_data();
  float* HS = hs->typed_data();
  float* AUX = aux->typed_data();
  float* ACT = acts->typed_data();
  const int nt = Threads(threads, d.H);
  int ok = 1;
  rnnlab_barrier step_barrier;  // one per step; set for the team OpenMP gives
#pragma omp parallel num_threads(nt)
  {
    const Units units = MyUnits(d.H);
    const int u0 = units.u0, w = units.w, G = d.G, H = d.H;
    const size_t GH = d.GH();
    // My columns of W_h, gate-major: column k -> gate k / w, unit u0 + k % w.
    Packed wp;
    std::vector<float> hp(size_t(d.B) * Round16(G * w) + 16);
    bool mine = (w == 0 || Pack(&wp, H, G * w, [&](int i, int k) {
                   return W[size_t(i) * GH + size_t(k / w) * H + u0 + k % w];
                 }));
    if (!mine) {
#pragma omp atomic write
      ok = 0;
    }
#pragma omp single
    rnnlab_barrier_init(&step_barrier, omp_get_num_threads());
    const int ldp = Round16(G * w);
    for (int s = 0; s < d.T && ok; ++s) {
      const int t = reverse ? d.T - 1 - s : s;
      // The previous step's states: the carry in, or row (b, t -/+ 1) of
      // hs/aux, T*H apart between batch rows.
      const int tp = reverse ? t + 1 : t - 1, ldh = s == 0 ? H : d.T * H;
      const float* h_prev = s == 0 ? H0 : HS + size_t(tp) * H;
      const float* c_prev = s == 0 ? C0 : AUX + size_t(tp) * H;
      if (w > 0) MatMul(h_prev, ldh, d.B, wp, hp.data(), ldp);
      for (int b = 0; b < d.B && w > 0; ++b) {
        const size_t row = size_t(b) * d.T + t;
        const float* x = X + row * GH + u0;
        const float* bx = BX + u0;
        const float* p = hp.data() + size_t(b) * ldp;
        float* h = HS + row * H + u0;
        float* ax = AUX + row * H + u0;
        float* act = ACT + row * GH + u0;
        const float* hb = h_prev + size_t(b) * ldh + u0;
        const float* cb = c_prev + size_t(b) * ldh + u0;
        switch (cell) {
          case kRnnTanh:
#pragma omp simd
            for (int j = 0; j < w; ++j)
              h[j] = rnnlab_tanh(x[j] + bx[j] + p[j]);
            break;
          case kRnnRelu:
#pragma omp simd
            for (int j = 0; j < w; ++j) {
              const float a = x[j] + bx[j] + p[j];
              h[j] = a < 0.0f ? 0.0f : a;  // NaN stays NaN
            }
            break;
          case kLstm:
#pragma omp simd
            for (int j = 0; j < w; ++j) {
              const float i = rnnlab_sigmoid(x[j] + bx[j] + p[j]);
              const float f = rnnlab_sigmoid(x[H + j] + bx[H + j] + p[w + j]);
              const float g =
                  rnnlab_tanh(x[2 * H + j] + bx[2 * H + j] + p[2 * w + j]);
              const float o =
                  rnnlab_sigmoid(x[3 * H + j] + bx[3 * H + j] + p[3 * w + j]);
              const float c = f * cb[j] + i * g;
              act[j] = i, act[H + j] = f, act[2 * H + j] = g;
              act[3 * H + j] = o;
              ax[j] = c;
              h[j] = o * rnnlab_tanh(c);
            }
            break;
          case kGru:
#pragma omp simd
            for (int j = 0; j < w; ++j) {
              const float r = rnnlab_sigmoid(x[j] + bx[j] + p[j]);
              const float z = rnnlab_sigmoid(x[H + j] + bx[H + j] + p[w + j]);
              const float hn = p[2 * w + j] + BN[u0 + j];
              const float n = rnnlab_tanh(x[2 * H + j] + bx[2 * H + j] + r * hn);
              act[j] = r, act[H + j] = z, act[2 * H + j] = n;
              ax[j] = hn;
              h[j] = (1.0f - z) * hb[j] + z * n;
            }
            break;
        }
      }
      rnnlab_barrier_wait(&step_barrier);
    }
  }
  if (!ok) return ffi::Error::Internal("rnnlab_recurrence_fwd: out of memory");
  return ffi::Error::Success();
}

ffi::Error Backward(int32_t cell, int32_t reverse, int32_t threads,
                    ffi::BufferR2<ffi::F32> w_h, ffi::BufferR2<ffi::F32> h0,
                    ffi::BufferR2<ffi::F32> c0, ffi::BufferR3<ffi::F32> hs,
                    ffi::BufferR3<ffi::F32> aux, ffi::BufferR3<ffi::F32> acts,
                    ffi::BufferR3<ffi::F32> d_hs, ffi::BufferR2<ffi::F32> d_ht,
                    ffi::BufferR2<ffi::F32> d_ct,
                    ffi::ResultBufferR3<ffi::F32> d_xp,
                    ffi::Result<ffi::AnyBuffer> d_hp,
                    ffi::ResultBufferR2<ffi::F32> d_h0,
                    ffi::ResultBufferR2<ffi::F32> d_c0,
                    ffi::ResultBufferR1<ffi::F32> d_bhn) {
  constexpr const char* kEntry = "rnnlab_recurrence_bwd";
  const auto hd = hs.dimensions();
  const int64_t B = hd[0], T = hd[1], H = hd[2], G = Gates(cell);
  if (auto e = CheckSizes(kEntry, cell, {B, T, H}, G); e.failure()) return e;
  const Shape hp_shape = cell == kGru ? Shape{B, T, G * H} : Shape{1};
  if (d_hp->element_type() != ffi::DataType::F32)
    return ffi::Error::InvalidArgument(std::string(kEntry) +
                                       ": d_hp must be float32");
  const std::string bad = Mismatch(
      kEntry, Named("w_h", w_h, {H, G * H}), Named("h0", h0, {B, H}),
      Named("c0", c0, {B, H}), Named("aux", aux, {B, T, H}),
      Named("acts", acts, {B, T, G * H}), Named("d_hs", d_hs, {B, T, H}),
      Named("d_hT", d_ht, {B, H}), Named("d_cT", d_ct, {B, H}),
      Named("d_xp", *d_xp, {B, T, G * H}), Named("d_hp", *d_hp, hp_shape),
      Named("d_h0", *d_h0, {B, H}), Named("d_c0", *d_c0, {B, H}),
      Named("d_bhn", *d_bhn, {H}));
  if (!bad.empty()) return ffi::Error::InvalidArgument(bad);
  const Dims d{int(T), int(B), int(H), int(G)};
  const float* W = w_h.typed_data();
  const float* H0 = h0.typed_data();
  const float* C0 = c0.typed_data();
  const float* HS = hs.typed_data();
  const float* AUX = aux.typed_data();
  const float* ACT = acts.typed_data();
  const float* DHS = d_hs.typed_data();
  const float* DHT = d_ht.typed_data();
  const float* DCT = d_ct.typed_data();
  float* DXP = d_xp->typed_data();
  float* DHP = cell == kGru ? static_cast<float*>(d_hp->untyped_data())
                            : nullptr;
  float* DH0 = d_h0->typed_data();
  float* DC0 = d_c0->typed_data();
  float* DBN = d_bhn->typed_data();
  const int nt = Threads(threads, d.H);
  const size_t BGH = d.B * d.GH();
  // d_hp of the current step for all units, double-buffered: a thread
  // writes step t-1's while another may still read step t's.
  std::vector<float> shared(2 * BGH);
  int ok = 1;
  rnnlab_barrier step_barrier;  // one per step; set for the team OpenMP gives
#pragma omp parallel num_threads(nt)
  {
    const Units units = MyUnits(d.H);
    const int u0 = units.u0, w = units.w, H = d.H;
    const size_t GH = d.GH();
    // My columns of W_h^T [GH, H]: row k, unit u0 + j -> W_h[u0 + j, k].
    Packed wt;
    const int ldd = Round16(std::max(w, 1));
    std::vector<float> dh(size_t(d.B) * ldd + 16), dc(size_t(d.B) * w + 1),
        direct(size_t(d.B) * w + 1), dbn(w + 1, 0.0f);
    bool mine = (w == 0 || Pack(&wt, int(GH), w, [&](int k, int j) {
                   return W[size_t(u0 + j) * GH + k];
                 }));
    if (!mine) {
#pragma omp atomic write
      ok = 0;
    }
    for (int b = 0; b < d.B; ++b)
      for (int j = 0; j < w; ++j) {
        dh[size_t(b) * ldd + j] = DHT[size_t(b) * H + u0 + j];
        dc[size_t(b) * w + j] = DCT[size_t(b) * H + u0 + j];
      }
#pragma omp single
    rnnlab_barrier_init(&step_barrier, omp_get_num_threads());
    for (int s = d.T - 1; s >= 0 && ok; --s) {
      const int t = reverse ? d.T - 1 - s : s;
      const int tp = reverse ? t + 1 : t - 1, ldh = s == 0 ? H : d.T * H;
      float* sh = shared.data() + (s % 2) * BGH;
      const float* h_prev = s == 0 ? H0 : HS + size_t(tp) * H;
      const float* c_prev = s == 0 ? C0 : AUX + size_t(tp) * H;
      for (int b = 0; b < d.B && w > 0; ++b) {
        const size_t o_h = (size_t(b) * d.T + t) * H + u0;
        const size_t o_g = (size_t(b) * d.T + t) * GH + u0;
        const float* dy = DHS + o_h;
        const float* h = HS + o_h;
        const float* ax = AUX + o_h;
        const float* act = ACT + o_g;
        const float* hb = h_prev + size_t(b) * ldh + u0;
        const float* cb = c_prev + size_t(b) * ldh + u0;
        float* dhb = dh.data() + size_t(b) * ldd;
        float* dcb = dc.data() + size_t(b) * w;
        float* dir = direct.data() + size_t(b) * w;
        float* dx = DXP + o_g;
        float* s = sh + size_t(b) * GH + u0;
        switch (cell) {
          case kRnnTanh:
#pragma omp simd
            for (int j = 0; j < w; ++j) {
              const float g = (dy[j] + dhb[j]) * (1.0f - h[j] * h[j]);
              dx[j] = s[j] = g, dir[j] = 0.0f;
            }
            break;
          case kRnnRelu:
#pragma omp simd
            for (int j = 0; j < w; ++j) {
              const float g = h[j] > 0.0f ? dy[j] + dhb[j] : 0.0f;
              dx[j] = s[j] = g, dir[j] = 0.0f;
            }
            break;
          case kLstm:
#pragma omp simd
            for (int j = 0; j < w; ++j) {
              const float i = act[j], f = act[H + j], g = act[2 * H + j],
                          o = act[3 * H + j];
              const float tc = rnnlab_tanh(ax[j]);
              const float dhj = dy[j] + dhb[j];
              const float dcj = dcb[j] + dhj * o * (1.0f - tc * tc);
              const float di = dcj * g * i * (1.0f - i);
              const float df = dcj * cb[j] * f * (1.0f - f);
              const float dg = dcj * i * (1.0f - g * g);
              const float d_o = dhj * tc * o * (1.0f - o);
              dx[j] = s[j] = di, dx[H + j] = s[H + j] = df;
              dx[2 * H + j] = s[2 * H + j] = dg;
              dx[3 * H + j] = s[3 * H + j] = d_o;
              dcb[j] = dcj * f;
              dir[j] = 0.0f;
            }
            break;
          case kGru: {
            float* dp = DHP + o_g;
            float* dbn_ = dbn.data();
#pragma omp simd
            for (int j = 0; j < w; ++j) {
              const float r = act[j], z = act[H + j], n = act[2 * H + j];
              const float dhj = dy[j] + dhb[j];
              const float dn = dhj * z * (1.0f - n * n);
              const float dz = dhj * (n - hb[j]) * z * (1.0f - z);
              const float dr = dn * ax[j] * r * (1.0f - r);
              dx[j] = dp[j] = s[j] = dr;
              dx[H + j] = dp[H + j] = s[H + j] = dz;
              dx[2 * H + j] = dn;
              dp[2 * H + j] = s[2 * H + j] = dn * r;
              dbn_[j] += dn * r;
              dir[j] = dhj * (1.0f - z);
            }
            break;
          }
        }
      }
      rnnlab_barrier_wait(&step_barrier);
      // dL/dh_{t-1} for my units: d_hp (all units) @ W_h^T, plus the path
      // that skips the matmul (GRU: (1 - z) dh).
      if (w > 0) MatMul(sh, int(GH), d.B, wt, dh.data(), ldd);
      for (int b = 0; b < d.B; ++b)
        for (int j = 0; j < w; ++j)
          dh[size_t(b) * ldd + j] += direct[size_t(b) * w + j];
    }
    for (int b = 0; b < d.B && ok; ++b)
      for (int j = 0; j < w; ++j) {
        DH0[size_t(b) * H + u0 + j] = dh[size_t(b) * ldd + j];
        DC0[size_t(b) * H + u0 + j] = cell == kLstm ? dc[size_t(b) * w + j]
                                                     : 0.0f;
      }
    for (int j = 0; j < w; ++j) DBN[u0 + j] = dbn[j];
  }
  if (!ok) return ffi::Error::Internal("rnnlab_recurrence_bwd: out of memory");
  return ffi::Error::Success();
}

// The attributes both handlers take, in this order.
auto BindAttrs() {
  return ffi::Ffi::Bind()
      .Attr<int32_t>("cell")
      .Attr<int32_t>("reverse")
      .Attr<int32_t>("threads");
}

}  // namespace

extern "C" const char* rnnlab_isa() { return RNNLAB_ISA; }

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    RnnlabRecurrenceFwd, Forward,
    BindAttrs()
        .Arg<ffi::BufferR3<ffi::F32>>()  // xp
        .Arg<ffi::BufferR1<ffi::F32>>()  // b_x
        .Arg<ffi::BufferR2<ffi::F32>>()  // w_h
        .Arg<ffi::BufferR2<ffi::F32>>()  // h0
        .Arg<ffi::BufferR2<ffi::F32>>()  // c0
        .Arg<ffi::BufferR1<ffi::F32>>()  // b_hn
        .Ret<ffi::BufferR3<ffi::F32>>()  // hs
        .Ret<ffi::BufferR3<ffi::F32>>()  // aux
        .Ret<ffi::BufferR3<ffi::F32>>()  // acts
);

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    RnnlabRecurrenceBwd, Backward,
    BindAttrs()
        .Arg<ffi::BufferR2<ffi::F32>>()  // w_h
        .Arg<ffi::BufferR2<ffi::F32>>()  // h0
        .Arg<ffi::BufferR2<ffi::F32>>()  // c0
        .Arg<ffi::BufferR3<ffi::F32>>()  // hs
        .Arg<ffi::BufferR3<ffi::F32>>()  // aux
        .Arg<ffi::BufferR3<ffi::F32>>()  // acts
        .Arg<ffi::BufferR3<ffi::F32>>()  // d_hs
        .Arg<ffi::BufferR2<ffi::F32>>()  // d_hT
        .Arg<ffi::BufferR2<ffi::F32>>()  // d_cT
        .Ret<ffi::BufferR3<ffi::F32>>()  // d_xp
        .Ret<ffi::AnyBuffer>()           // d_hp: [B,T,GH] (GRU) or [1]
        .Ret<ffi::BufferR2<ffi::F32>>()  // d_h0
        .Ret<ffi::BufferR2<ffi::F32>>()  // d_c0
        .Ret<ffi::BufferR1<ffi::F32>>()  // d_bhn
);
