/* Token-by-token generation from a plain recurrent LM, on the CPU.
 *
 * Why this exists: drawing one character at a time is a chain of tiny
 * matrix-vector products. Under XLA each step pays per-operation overhead
 * and runs its matvecs on one core, reading all weights (2.5 MB for the
 * default 2 x 256 GRU) from L3 per character. Here the whole loop runs in
 * one call: each thread owns a slice of every layer's hidden units, so it
 * reads only its columns of each weight matrix, and those stay in its own
 * L2 across characters. Threads meet at one barrier per layer and one
 * after the readout. At batch BATCH_MIN or more, each product takes all
 * rows at once in register tiles (matmul), reading the weights once per
 * character instead of once per row.
 *
 * Model (see rnnlab/models/lm.py, cells.py; float32, eval mode):
 *   layer 0 input term:  table[token]            table = embed @ W_x + b
 *   layer l > 0:         x @ W_x + b,  x = layer l-1's new hidden state
 *   hidden term:         h @ W_h
 *   gates as in cells.py (gate order: LSTM i,f,g,o; GRU r,z,n, reset after)
 *   logits = h_last @ W_out + b_out
 * Weights are row-major [in, G*H] (Flax's kernels); the columns of gate g,
 * unit u sit at g*H + u.
 *
 * Drawing (rnnlab/sample.py `next_token`): token = argmax(logits / T + g)
 * over the top_k likeliest (all if top_k = 0), g = Gumbel noise supplied by
 * the caller; T = 0 means argmax(logits).
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "barrier.h"
#include "vecmath.h"

enum { CELL_RNN_TANH = 0, CELL_RNN_RELU = 1, CELL_LSTM = 2, CELL_GRU = 3 };
/* Columns per packed block: 8 vectors of accumulators (128 columns with
 * AVX-512, 64 with AVX2, 32 generic), two sets of them for narrow blocks:
 * at most 16 of the register file, which AVX2 and SSE have. */
enum { VECS = 8, BLOCK = VECS * RNNLAB_LANES };
/* A batch of rows (BATCH_MIN or more) multiplies in register tiles of
 * TILE_ROWS rows x TILE_VECS vectors, as recurrence.cc's training loops
 * do: the rows share each panel load, where one matvec per row would read
 * the whole part once per row. TILE_VECS divides VECS, so a block splits
 * into whole sub-panels; accumulators + panel vectors + a broadcast fit
 * the register file (AVX-512 24 + 4 + 1 of 32; AVX2, SSE 12 + 2 + 1 of
 * 16). */
#if RNNLAB_VEC_BYTES == 64
enum { TILE_ROWS = 6, TILE_VECS = 4 };
#else
enum { TILE_ROWS = 6, TILE_VECS = 2 };
#endif
enum { BATCH_MIN = 4 };

const char* rnnlab_isa(void) { return RNNLAB_ISA; }

static int num_gates(int cell) {
  return cell == CELL_LSTM ? 4 : cell == CELL_GRU ? 3 : 1;
}

static int round16(int n) { return (n + 15) / 16 * 16; }

/* [u0, u1): this thread's share of n columns, in multiples of 16 floats so
 * that no two threads write the same cache line. */
static void share(int n, int tid, int nt, int* u0, int* u1) {
  int per = round16((n + nt - 1) / nt);
  *u0 = tid * per < n ? tid * per : n;
  *u1 = (tid + 1) * per < n ? (tid + 1) * per : n;
}

/* One thread's columns of a weight matrix, for out = x @ W_part.
 *
 * The part is columns [u0, u0 + w) of each of G gate blocks gs apart in
 * W [rows, ldw]: logically [rows, cols = G*w], gate-major. It is stored as
 * column blocks of BLOCK (the last one narrower, padded to 16 with zeros),
 * each block [rows, width] contiguous: the matvec then streams its memory
 * in order and keeps a block's accumulators in registers, and the thread
 * touches no other thread's cache lines, so its part stays in its own L2.
 */
typedef struct {
  float* w;
  int rows, cols, padded; /* padded = round16(cols) */
} Packed;

static int pack(Packed* P, const float* W, int rows, int ldw, int gs, int G,
                int u0, int w) {
  P->rows = rows;
  P->cols = G * w;
  P->padded = round16(P->cols);
  /* 64-byte aligned: a row of a block then spans whole cache lines (with
   * calloc's 16-byte alignment every load split two lines: half speed). */
  const size_t bytes = ((size_t)rows * P->padded * sizeof(float) + 63) / 64 * 64;
  P->w = aligned_alloc(64, bytes);
  if (!P->w) return 1;
  memset(P->w, 0, bytes);
  for (int k0 = 0; k0 < P->cols; k0 += BLOCK) {
    const int width = P->padded - k0 < BLOCK ? P->padded - k0 : BLOCK;
    float* blk = P->w + (size_t)rows * k0;
    for (int i = 0; i < rows; ++i)
      for (int k = k0; k < k0 + width && k < P->cols; ++k)
        blk[(size_t)i * width + (k - k0)] =
            W[(size_t)i * ldw + (size_t)(k / w) * gs + u0 + k % w];
  }
  return 0;
}

/* o[0, LANES*nv) = x[0, rows) @ blk [rows, LANES*nv], accumulating in
 * registers. Narrow blocks (nv <= VECS/2) take rows in pairs with two sets
 * of accumulators, so that the FMA latency chain does not set the pace. */
static inline __attribute__((always_inline)) void block_matvec(
    const float* x, int rows, const float* blk, float* o, const int nv) {
  const int L = RNNLAB_LANES;
  rnnlab_vec a[VECS], b[VECS];
  for (int k = 0; k < nv; ++k) a[k] = b[k] = (rnnlab_vec){0};
  int i = 0;
  if (nv <= VECS / 2) {
    for (; i + 2 <= rows; i += 2) {
      const rnnlab_vec x0 = rnnlab_splat(x[i]);
      const rnnlab_vec x1 = rnnlab_splat(x[i + 1]);
      const float* r = blk + (size_t)i * L * nv;
      for (int k = 0; k < nv; ++k) {
        a[k] += x0 * rnnlab_load(r + L * k);
        b[k] += x1 * rnnlab_load(r + L * (nv + k));
      }
    }
  }
  for (; i < rows; ++i) {
    const rnnlab_vec xi = rnnlab_splat(x[i]);
    const float* r = blk + (size_t)i * L * nv;
    for (int k = 0; k < nv; ++k) a[k] += xi * rnnlab_load(r + L * k);
  }
  for (int k = 0; k < nv; ++k) rnnlab_store(o + L * k, a[k] + b[k]);
}

/* out[0, padded) = x[0, rows) @ P. */
static void matvec(const Packed* P, const float* x, float* out) {
  for (int k0 = 0; k0 < P->cols; k0 += BLOCK) {
    const int width = P->padded - k0 < BLOCK ? P->padded - k0 : BLOCK;
    const float* blk = P->w + (size_t)P->rows * k0;
    float* o = out + k0;
    switch (width / RNNLAB_LANES) { /* constant nv: the loops over k unroll */
      case 1: block_matvec(x, P->rows, blk, o, 1); break;
      case 2: block_matvec(x, P->rows, blk, o, 2); break;
      case 3: block_matvec(x, P->rows, blk, o, 3); break;
      case 4: block_matvec(x, P->rows, blk, o, 4); break;
      case 5: block_matvec(x, P->rows, blk, o, 5); break;
      case 6: block_matvec(x, P->rows, blk, o, 6); break;
      case 7: block_matvec(x, P->rows, blk, o, 7); break;
      case 8: block_matvec(x, P->rows, blk, o, 8); break;
    }
  }
}

/* o[r, 0:LANES*nv) = x[r, 0:rows) @ p for r < R (rows of x ldx apart, of
 * o ldo apart); row i of the panel is the nv vectors at p + i * ps. R and
 * nv are constants once inlined: the tile then lives in registers. */
static inline __attribute__((always_inline)) void tile(
    const float* x, int ldx, const int R, const int nv, int rows,
    const float* p, int ps, float* o, int ldo) {
  const int L = RNNLAB_LANES;
  rnnlab_vec acc[TILE_ROWS][TILE_VECS];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < nv; ++v) acc[r][v] = (rnnlab_vec){0};
  for (int i = 0; i < rows; ++i) {
    rnnlab_vec b[TILE_VECS];
    for (int v = 0; v < nv; ++v)
      b[v] = rnnlab_load(p + (size_t)i * ps + L * v);
    for (int r = 0; r < R; ++r) {
      const rnnlab_vec xr = rnnlab_splat(x[(size_t)r * ldx + i]);
      for (int v = 0; v < nv; ++v) acc[r][v] += xr * b[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < nv; ++v)
      rnnlab_store(o + (size_t)r * ldo + L * v, acc[r][v]);
}

/* tile() with R in 1..TILE_ROWS and nv in 1..TILE_VECS as constants. */
#define TILE_NV(R, nv)                                       \
  case nv: tile(x, ldx, R, nv, rows, p, ps, o, ldo); return;
#if RNNLAB_VEC_BYTES == 64
#define TILE_R(R)                                            \
  case R: switch (nv) { TILE_NV(R, 1) TILE_NV(R, 2) TILE_NV(R, 3) \
                        TILE_NV(R, 4) } return;
#else
#define TILE_R(R)                                            \
  case R: switch (nv) { TILE_NV(R, 1) TILE_NV(R, 2) } return;
#endif
static void any_tile(const float* x, int ldx, int R, int nv, int rows,
                     const float* p, int ps, float* o, int ldo) {
  switch (R) { TILE_R(1) TILE_R(2) TILE_R(3) TILE_R(4) TILE_R(5) TILE_R(6) }
}
#undef TILE_R
#undef TILE_NV

/* out[b, 0:padded) = x[b, 0:rows) @ P for b < B (rows of x ldx apart, of
 * out ldo apart). A sub-panel (rows x TILE_VECS vectors) stays in L1
 * while every row tile reads it. */
static void matmul(const Packed* P, const float* x, int ldx, int B,
                   float* out, int ldo) {
  const int L = RNNLAB_LANES;
  for (int k0 = 0; k0 < P->cols; k0 += BLOCK) {
    const int width = P->padded - k0 < BLOCK ? P->padded - k0 : BLOCK;
    const int nvb = width / L;
    const float* blk = P->w + (size_t)P->rows * k0;
    for (int v0 = 0; v0 < nvb; v0 += TILE_VECS) {
      const int nv = nvb - v0 < TILE_VECS ? nvb - v0 : TILE_VECS;
      for (int b = 0; b < B; b += TILE_ROWS)
        any_tile(x + (size_t)b * ldx, ldx,
                 B - b < TILE_ROWS ? B - b : TILE_ROWS, nv, P->rows,
                 blk + L * v0, width, out + (size_t)b * ldo + k0 + L * v0,
                 ldo);
    }
  }
}

/* k-th largest of v[0..n) (1-based k), by partial selection on a copy. */
static float kth_largest(const float* v, int n, int k, float* scratch) {
  memcpy(scratch, v, sizeof(float) * n);
  int lo = 0, hi = n - 1, want = k - 1;
  while (lo < hi) {
    float pivot = scratch[(lo + hi) / 2];
    int i = lo, j = hi;
    while (i <= j) {
      while (scratch[i] > pivot) ++i;
      while (scratch[j] < pivot) --j;
      if (i <= j) {
        float t = scratch[i]; scratch[i] = scratch[j]; scratch[j] = t;
        ++i; --j;
      }
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else break;
  }
  return scratch[want];
}

/* The same rule as sample.next_token; the first maximum wins ties. */
static int draw(const float* logits, const float* gumbel, int V,
                float temperature, int top_k, float* scratch) {
  int best = 0;
  if (!(temperature > 0.0f)) {
    for (int v = 1; v < V; ++v) if (logits[v] > logits[best]) best = v;
    return best;
  }
  const float kth = top_k > 0 ? kth_largest(logits, V, top_k, scratch)
                              : -INFINITY;
  const float t = temperature > 1e-6f ? temperature : 1e-6f;
  float best_score = -INFINITY;
  best = -1;
  for (int v = 0; v < V; ++v) {
    if (logits[v] < kth) continue;  /* outside the top k */
    const float s = logits[v] / t + gumbel[v];
    if (best < 0 || s > best_score) { best = v; best_score = s; }
  }
  return best;
}

/* One thread's share of the model: its units of every layer, its columns
 * of every weight matrix (packed), its share of the vocabulary. */
typedef struct {
  int u0, w;    /* units [u0, u0 + w) */
  Packed px;    /* W_x's columns (layers > 0) */
  Packed ph;    /* W_h's columns */
  float* bias;  /* b_x's entries, gate-major [G*w]; zeros for layer 0 */
} LayerPart;

typedef struct {
  LayerPart* layers;  /* [L] */
  Packed out;         /* W_out's columns [v0, v1) */
  int v0, v1;
} ThreadPart;

/* The model laid out for `num_threads` threads, built once per set of
 * weights. It points into the caller's table, b_hn and b_out, which must
 * outlive it. */
typedef struct {
  int L, V, nt, max_h, max_cols;
  int* cell;
  int* hidden;
  const float* table;
  const float** b_hn;
  const float* b_out;
  ThreadPart* parts;  /* [nt] */
} Plan;

void rnnlab_plan_free(Plan* plan) {
  if (!plan) return;
  for (int t = 0; t < plan->nt && plan->parts; ++t) {
    ThreadPart* part = &plan->parts[t];
    for (int l = 0; l < plan->L && part->layers; ++l) {
      free(part->layers[l].px.w);
      free(part->layers[l].ph.w);
      free(part->layers[l].bias);
    }
    free(part->layers);
    free(part->out.w);
  }
  free(plan->parts);
  free(plan->cell);
  free(plan->hidden);
  free(plan->b_hn);
  free(plan);
}

/* Packs a model for `num_threads` threads; NULL on a bad argument or
 * out of memory.
 *
 * Per layer l (arrays of length num_layers):
 *   cell[l] (CELL_*), hidden[l];
 *   w_x[l]  [hidden[l-1], G*H]; for layer 0 the table [V, G*H] of its
 *           input term per token, biases included;
 *   b_x[l]  [G*H] (ignored for layer 0); w_h[l] [H, G*H];
 *   b_hn[l] [H] the GRU candidate's hidden bias (else unused).
 * w_out [H_last, V], b_out [V].
 */
Plan* rnnlab_plan(int num_layers, const int* cell, const int* hidden,
                  const float* const* w_x, const float* const* b_x,
                  const float* const* w_h, const float* const* b_hn,
                  const float* w_out, const float* b_out, int vocab,
                  int num_threads) {
  if (num_layers < 1 || vocab < 1 || num_threads < 1) return NULL;
  for (int l = 0; l < num_layers; ++l) {
    if (cell[l] < CELL_RNN_TANH || cell[l] > CELL_GRU || hidden[l] < 1)
      return NULL;
    /* Every weight matrix's size, padded, must fit in an int. */
    const size_t in = l == 0 ? (size_t)vocab : (size_t)hidden[l - 1];
    const size_t cols = (size_t)num_gates(cell[l]) * hidden[l] + 16;
    if (cols * (in > (size_t)hidden[l] ? in : (size_t)hidden[l]) > INT_MAX)
      return NULL;
  }
  if (((size_t)vocab + 16) * hidden[num_layers - 1] > INT_MAX) return NULL;
  const int L = num_layers, V = vocab, nt = num_threads;
  Plan* plan = calloc(1, sizeof(Plan));
  if (!plan) return NULL;
  plan->L = L, plan->V = V, plan->nt = nt;
  plan->max_cols = round16(V);
  plan->cell = malloc(sizeof(int) * L);
  plan->hidden = malloc(sizeof(int) * L);
  plan->b_hn = malloc(sizeof(float*) * L);
  plan->parts = calloc(nt, sizeof(ThreadPart));
  plan->table = w_x[0];
  plan->b_out = b_out;
  int bad = !plan->cell || !plan->hidden || !plan->b_hn || !plan->parts;
  for (int l = 0; l < L && !bad; ++l) {
    plan->cell[l] = cell[l];
    plan->hidden[l] = hidden[l];
    plan->b_hn[l] = b_hn[l];
    const int cols = round16(num_gates(cell[l]) * hidden[l]);
    if (cols > plan->max_cols) plan->max_cols = cols;
    if (hidden[l] > plan->max_h) plan->max_h = hidden[l];
  }
  /* Each thread packs its own part: the pages are then its first touch. */
#pragma omp parallel num_threads(nt) if (!bad)
  {
    const int tid = omp_get_thread_num();
    ThreadPart* part = &plan->parts[tid];
    /* Fewer threads than asked (OMP_THREAD_LIMIT) would leave parts out. */
    int fail = omp_get_num_threads() != nt;
    fail = fail || !(part->layers = calloc(L, sizeof(LayerPart)));
    for (int l = 0; l < L && !fail; ++l) {
      LayerPart* lp = &part->layers[l];
      const int H = hidden[l], G = num_gates(cell[l]);
      int u1;
      share(H, tid, nt, &lp->u0, &u1);
      lp->w = u1 - lp->u0;
      fail |= !(lp->bias = calloc((size_t)G * lp->w + 1, sizeof(float)));
      fail = fail || pack(&lp->ph, w_h[l], H, G * H, H, G, lp->u0, lp->w);
      if (l > 0 && !fail) {
        fail |= pack(&lp->px, w_x[l], hidden[l - 1], G * H, H, G, lp->u0,
                     lp->w);
        for (int k = 0; k < G * lp->w; ++k)
          lp->bias[k] = b_x[l][(k / lp->w) * H + lp->u0 + k % lp->w];
      }
    }
    share(V, tid, nt, &part->v0, &part->v1);
    fail = fail || pack(&part->out, w_out, hidden[L - 1], V, 0, 1, part->v0,
                        part->v1 - part->v0);
    if (fail) {
#pragma omp atomic write
      bad = 1;
    }
  }
  if (bad) {
    rnnlab_plan_free(plan);
    return NULL;
  }
  return plan;
}

/* Draws `length` tokens per row. Returns 0 on success, 1 on a bad
 * argument, 2 if out of memory or short of threads.
 *
 * h[l] [B, H], c[l] [B, H] (LSTM): the carries after the prime, updated in
 * place to the carries after the last step run. logits0 [B, V]: the logits
 * the first token is drawn from; gumbel [T, B, V].
 * Outputs: tokens [T, B]; logits [T, B, V] (step t's row: the logits token
 * t was drawn from). The last token is drawn but not run through the
 * model, so the carries end after the step that consumed token T-2.
 */
int rnnlab_generate(const Plan* plan, float* const* h, float* const* c,
                    const float* logits0, const float* gumbel,
                    float temperature, int top_k, int batch, int length,
                    int* tokens, float* logits) {
  if (!plan || batch < 1 || length < 1 || top_k < 0 || top_k > plan->V)
    return 1;
  if ((size_t)length * batch * plan->V > INT_MAX ||
      (size_t)2 * plan->L * batch * plan->max_h > INT_MAX)
    return 1; /* sizes whose products overflow an int */
  const int V = plan->V, B = batch, L = plan->L, max_h = plan->max_h;
  const int* hidden = plan->hidden;
  const int* cell = plan->cell;
  /* Hidden states, double-buffered: a thread writes step s+1's units
   * while the others may still read step s's whole vector. */
  float* hbuf = calloc((size_t)2 * L * B * max_h, sizeof(float));
  float* cur_logits = malloc(sizeof(float) * (size_t)B * V);
  int failed = !hbuf || !cur_logits;
#define HBUF(l, p) (hbuf + ((size_t)(l) * 2 + (p)) * B * max_h)
  if (!failed) {
    for (int l = 0; l < L; ++l)
      for (int b = 0; b < B; ++b)
        memcpy(HBUF(l, 0) + (size_t)b * max_h, h[l] + (size_t)b * hidden[l],
               sizeof(float) * hidden[l]);
    memcpy(cur_logits, logits0, sizeof(float) * (size_t)B * V);
  }

  /* The per-step barriers (the team is plan->nt threads, or the loop does
   * not run). */
  rnnlab_barrier step_barrier;
  rnnlab_barrier_init(&step_barrier, plan->nt);
#pragma omp parallel num_threads(plan->nt) if (!failed)
  {
    const int tid = omp_get_thread_num();
    const ThreadPart* part = &plan->parts[tid];
    /* Wide batches: every row's terms at once ([B, ld] each), in tiles. */
    const int batched = B >= BATCH_MIN, ld = plan->max_cols;
    float* accx = malloc(sizeof(float) * ld * (batched ? B : 1));
    float* acch = malloc(sizeof(float) * ld * (batched ? B : 1));
    float* scratch = malloc(sizeof(float) * (size_t)V);
    int* cur_tokens = malloc(sizeof(int) * (size_t)B);
    if (!accx || !acch || !scratch || !cur_tokens ||
        omp_get_num_threads() != plan->nt) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp barrier
    int p = 0; /* which half of hbuf holds the current states */
    for (int s = 0; s < length && !failed; ++s) {
      /* Every thread draws the same tokens from the same logits; one
       * writes them out. */
      for (int b = 0; b < B; ++b) {
        const float* lg = cur_logits + (size_t)b * V;
        cur_tokens[b] = draw(lg, gumbel + ((size_t)s * B + b) * V, V,
                             temperature, top_k, scratch);
        if (tid == 0) {
          tokens[(size_t)s * B + b] = cur_tokens[b];
          memcpy(logits + ((size_t)s * B + b) * V, lg, sizeof(float) * V);
        }
      }
      if (s == length - 1) break;
      rnnlab_barrier_wait(&step_barrier);
      for (int l = 0; l < L; ++l) {
        const LayerPart* lp = &part->layers[l];
        const int H = hidden[l], G = num_gates(cell[l]), n = lp->w;
        if (batched && n > 0) {
          if (l > 0) matmul(&lp->px, HBUF(l - 1, 1 - p), max_h, B, accx, ld);
          matmul(&lp->ph, HBUF(l, p), max_h, B, acch, ld);
        }
        for (int b = 0; b < B && n > 0; ++b) {
          const float* hin = HBUF(l, p) + (size_t)b * max_h;
          float* hout = HBUF(l, 1 - p) + (size_t)b * max_h + lp->u0;
          float* accx_b = accx + (batched ? (size_t)b * ld : 0);
          const float* acch_b = acch + (batched ? (size_t)b * ld : 0);
          if (l == 0) {
            const float* row = plan->table + (size_t)cur_tokens[b] * G * H;
            for (int g = 0; g < G; ++g)
              memcpy(accx_b + g * n, row + g * H + lp->u0,
                     sizeof(float) * n);
          } else if (!batched) {
            matvec(&lp->px, HBUF(l - 1, 1 - p) + (size_t)b * max_h, accx);
          }
          if (!batched) matvec(&lp->ph, hin, acch);
          const float* bx = lp->bias;
          const float* hb = hin + lp->u0;
          switch (cell[l]) {
            case CELL_RNN_TANH:
#pragma omp simd
              for (int j = 0; j < n; ++j)
                hout[j] = rnnlab_tanh(accx_b[j] + bx[j] + acch_b[j]);
              break;
            case CELL_RNN_RELU:
#pragma omp simd
              for (int j = 0; j < n; ++j) {
                const float a = accx_b[j] + bx[j] + acch_b[j];
                hout[j] = a < 0.0f ? 0.0f : a; /* NaN stays NaN */
              }
              break;
            case CELL_LSTM: {
              float* cb = c[l] + (size_t)b * H + lp->u0;
#pragma omp simd
              for (int j = 0; j < n; ++j) {
                const float i_ = accx_b[j] + bx[j] + acch_b[j];
                const float f_ = accx_b[n + j] + bx[n + j] + acch_b[n + j];
                const float g_ = accx_b[2 * n + j] + bx[2 * n + j] +
                                 acch_b[2 * n + j];
                const float o_ = accx_b[3 * n + j] + bx[3 * n + j] +
                                 acch_b[3 * n + j];
                const float cn = rnnlab_sigmoid(f_) * cb[j] + rnnlab_sigmoid(i_) * rnnlab_tanh(g_);
                cb[j] = cn;
                hout[j] = rnnlab_sigmoid(o_) * rnnlab_tanh(cn);
              }
              break;
            }
            case CELL_GRU: {
              const float* bn = plan->b_hn[l] + lp->u0;
#pragma omp simd
              for (int j = 0; j < n; ++j) {
                const float r =
                    rnnlab_sigmoid(accx_b[j] + bx[j] + acch_b[j]);
                const float z =
                    rnnlab_sigmoid(accx_b[n + j] + bx[n + j] + acch_b[n + j]);
                const float cand =
                    rnnlab_tanh(accx_b[2 * n + j] + bx[2 * n + j] +
                                r * (acch_b[2 * n + j] + bn[j]));
                hout[j] = (1.0f - z) * hb[j] + z * cand;
              }
              break;
            }
          }
        }
        rnnlab_barrier_wait(&step_barrier);
      }
      /* Readout, split over the vocabulary. */
      if (batched && part->v1 > part->v0)
        matmul(&part->out, HBUF(L - 1, 1 - p), max_h, B, accx, ld);
      for (int b = 0; b < B && part->v1 > part->v0; ++b) {
        const float* o = accx + (batched ? (size_t)b * ld : 0);
        if (!batched)
          matvec(&part->out, HBUF(L - 1, 1 - p) + (size_t)b * max_h, accx);
        float* lg = cur_logits + (size_t)b * V;
        for (int v = part->v0; v < part->v1; ++v)
          lg[v] = o[v - part->v0] + plan->b_out[v];
      }
      p = 1 - p;
      rnnlab_barrier_wait(&step_barrier);
    }
    free(accx), free(acch), free(scratch), free(cur_tokens);
    /* The carries out: the last states computed. */
#pragma omp barrier
    if (tid == 0 && !failed)
      for (int l = 0; l < L; ++l)
        for (int b = 0; b < B; ++b)
          memcpy(h[l] + (size_t)b * hidden[l],
                 HBUF(l, p) + (size_t)b * max_h, sizeof(float) * hidden[l]);
  }
#undef HBUF
  free(hbuf);
  free(cur_logits);
  return failed ? 2 : 0;
}
