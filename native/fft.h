// Discrete Fourier transforms of any length for the STFT kernel (stft.cc): a mixed-radix
// Stockham FFT (self-sorting stages: radix 4, 2, 3, 5 butterflies and a generic odd radix),
// Bluestein's chirp-z convolution for lengths with a prime factor above kMaxDirectRadix, and the
// half-length trick for real input of even length. Computed in double, so a float32 result is
// correctly rounded to ~1 ulp. Batched: F sequences are interleaved (element j of sequence f at
// j F + f) with real and imaginary parts in separate arrays, so every stage's inner loop runs over
// contiguous doubles (fft_stages.inc, compiled for AVX2+FMA and for the baseline).
#pragma once
#include <complex>
#include <cstdint>
#include <memory>
#include <vector>

namespace kestrel {

// Prime factors up to this are done as generic O(p^2) butterflies; a larger one sends the whole
// length through Bluestein (a power-of-two FFT of length >= 2n - 1).
constexpr int64_t kMaxDirectRadix = 31;

// A forward complex DFT of length n: X[k] = sum_j x[j] exp(-2 pi i j k / n), of F interleaved
// sequences at once. Immutable once built, so threads share it; work memory comes from the caller.
class FftPlan {
 public:
  explicit FftPlan(int64_t n);
  int64_t size() const { return n_; }
  // Doubles of work memory forward() needs for a batch of F.
  int64_t work_size(int64_t F) const;
  // (yr, yi) = DFT of (xr, xi), each [n, F] (sequence f in column f); x is not modified and must
  // not overlap y.
  void forward(const double* xr, const double* xi, double* yr, double* yi, int64_t F, double* work) const;

 private:
  void stockham(const double* xr, const double* xi, double* yr, double* yi, int64_t F, double* work) const;
  void bluestein(const double* xr, const double* xi, double* yr, double* yi, int64_t F, double* work) const;
  int64_t n_;
  std::vector<int64_t> factors_;                   // radices, in stage order
  std::vector<double> tw_re_, tw_im_;              // exp(-2 pi i j / n), j < n
  std::vector<std::vector<double>> stage_re_, stage_im_;  // per stage, in the order its butterflies read them
  // Bluestein: chirp c[j] = exp(-pi i j^2 / n), the FFT of the conjugate chirp wrapped to m, the plan of m
  std::vector<double> chirp_re_, chirp_im_, chirp_spec_re_, chirp_spec_im_;
  std::unique_ptr<FftPlan> inner_;
};

// The DFT of F real frames of n samples, first n/2 + 1 bins (the rest are conjugates). Even n
// runs a complex FFT of n/2 on the packed pairs (x[2j] + i x[2j+1]) and untangles it; odd n runs
// the full length.
class RealFftPlan {
 public:
  explicit RealFftPlan(int64_t n);
  int64_t size() const { return n_; }
  int64_t work_size(int64_t F) const;
  // frames: F rows of n samples; (re, im): [n/2 + 1, F], bin k of frame f at k F + f.
  void forward(const double* frames, int64_t F, double* re, double* im, double* work) const;

 private:
  int64_t n_;
  FftPlan inner_;                      // length n/2 (even n) or n (odd n)
  std::vector<double> untangle_re_, untangle_im_;  // exp(-2 pi i k / n), k <= n/2 (even n)
};

// A shared plan per length, built once (thread-safe).
const RealFftPlan& real_fft_plan(int64_t n);
const FftPlan& fft_plan(int64_t n);

}  // namespace kestrel
