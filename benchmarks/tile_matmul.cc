// The training kernel's recurrent matmul on its own (benchmarks/tile_matmul.py
// builds and runs it): C [M, N] = A [M, K] @ W [K, N], N split over the
// threads as the kernel splits gate columns, each thread's part packed once
// and multiplied REPEATS times per sample. Prints one GFLOP/s per sample.
//
// recurrence.cc is included whole, so this times exactly its Pack and
// MatMul, register tile and all (-DRNNLAB_TILE_ROWS/VECS pick the tile).
#include <chrono>
#include <cstdio>

#include "recurrence.cc"

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s M K N LDA SAMPLES\n", argv[0]);
    return 2;
  }
  const int M = atoi(argv[1]), K = atoi(argv[2]), N = atoi(argv[3]),
            lda = atoi(argv[4]), samples = atoi(argv[5]);
  constexpr int kRepeats = 5;
  std::vector<float> a(size_t(M) * lda), w(size_t(K) * N);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(i % 97) / 97.0f;
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(i % 89) / 89.0f - 0.5f;
  std::vector<double> seconds(samples);
#pragma omp parallel
  {
    const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    int n0, n1;
    Share(N, tid, nt, &n0, &n1);
    Packed p;
    Pack(&p, K, n1 - n0,
         [&](int i, int k) { return w[size_t(i) * N + n0 + k]; });
    std::vector<float> c(size_t(M) * Round16(std::max(n1 - n0, 1)));
    for (int s = 0; s < samples; ++s) {
#pragma omp barrier
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < kRepeats && n1 > n0; ++r)
        MatMul(a.data(), lda, M, p, c.data(), Round16(n1 - n0));
#pragma omp barrier
      if (tid == 0)
        seconds[s] = std::chrono::duration<double>(
                         std::chrono::steady_clock::now() - t0).count() /
                     kRepeats;
    }
  }
  for (double s : seconds) std::printf("%.2f\n", 2.0 * M * K * N / s / 1e9);
  return 0;
}
