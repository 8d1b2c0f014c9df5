// Discrete Fourier transforms of any length for the STFT kernel (stft.cc): a mixed-radix
// Stockham FFT (self-sorting stages, each a loop of contiguous butterflies: radix 4, 2, 3, 5 and a
// generic odd radix), Bluestein's chirp-z convolution for lengths with a prime factor above
// kMaxDirectRadix, and the half-length trick for real input of even length.
// Computed in double (twiddles from std::polar), so a float32 result is correctly rounded to ~1 ulp.
#pragma once
#include <complex>
#include <cstdint>
#include <memory>
#include <vector>

namespace kestrel {

using cplx = std::complex<double>;

// Prime factors up to this are done as generic O(p^2) butterflies; a larger one sends the whole
// length through Bluestein (a power-of-two FFT of length >= 2n - 1).
constexpr int64_t kMaxDirectRadix = 31;

// A forward complex DFT of length n: X[k] = sum_j x[j] exp(-2 pi i j k / n). Immutable once
// built, so threads share it; per-call work memory comes from the caller.
class FftPlan {
 public:
  explicit FftPlan(int64_t n);
  int64_t size() const { return n_; }
  // Complex doubles of work memory forward() needs.
  int64_t scratch_size() const;
  // out[0..n) = DFT(in[0..n)); in and out must not overlap; scratch holds scratch_size() values.
  void forward(const cplx* in, cplx* out, cplx* scratch) const;

 private:
  void mixed_radix(const cplx* in, cplx* out, cplx* work) const;
  void bluestein(const cplx* in, cplx* out, cplx* scratch) const;
  int64_t n_;
  std::vector<int64_t> factors_;  // radices, in stage order
  std::vector<cplx> twiddles_;    // exp(-2 pi i j / n), j < n
  std::vector<std::vector<cplx>> stage_twiddles_;  // per stage, in the order its butterflies read them
  // Bluestein: chirp c[j] = exp(-pi i j^2 / n), FFT of the conjugate chirp wrapped to m, and the plan of m
  std::vector<cplx> chirp_, chirp_spectrum_;
  std::unique_ptr<FftPlan> inner_;
};

// The DFT of n real values, first n/2 + 1 bins (the rest are conjugates). Even n runs a complex
// FFT of n/2 on the packed pairs (x[2j] + i x[2j+1]) and untangles it; odd n runs the full length.
class RealFftPlan {
 public:
  explicit RealFftPlan(int64_t n);
  int64_t size() const { return n_; }
  int64_t scratch_size() const;
  // out[0..n/2] = DFT(in)[0..n/2]; scratch holds scratch_size() values.
  void forward(const double* in, cplx* out, cplx* scratch) const;

 private:
  int64_t n_;
  FftPlan half_;                  // length n/2 (even n) or n (odd n)
  std::vector<cplx> untangle_;    // exp(-2 pi i k / n), k <= n/2 (even n)
};

// A shared plan per length, built once (thread-safe).
const RealFftPlan& real_fft_plan(int64_t n);
const FftPlan& fft_plan(int64_t n);

}  // namespace kestrel
