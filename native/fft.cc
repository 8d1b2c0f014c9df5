// FFT plans of any length (fft.h): factorisation, twiddle tables, the Stockham stage sequence
// (stage bodies in fft_stages.inc, compiled for AVX2+FMA and the baseline, picked at run time),
// Bluestein's chirp-z for large prime factors, and the real-input untangling.
#include "fft.h"

#include <cmath>
#include <map>
#include <mutex>

#include "kernel_api.h"
#include "simd.h"

namespace kestrel {
namespace {

namespace isa_base {
#include "fft_stages.inc"
}  // namespace isa_base

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace isa_avx2 {
#include "fft_stages.inc"
}  // namespace isa_avx2
#pragma GCC pop_options

const double kPi = 3.14159265358979323846;

std::vector<int64_t> factorize(int64_t n) {
  std::vector<int64_t> f;
  while (n % 4 == 0) f.push_back(4), n /= 4;
  if (n % 2 == 0) f.push_back(2), n /= 2;
  for (int64_t p = 3; p * p <= n; p += 2)
    while (n % p == 0) f.push_back(p), n /= p;
  if (n > 1) f.push_back(n);
  return f;
}

int64_t next_pow2(int64_t n) {
  int64_t m = 1;
  while (m < n) m <<= 1;
  return m;
}

}  // namespace

FftPlan::FftPlan(int64_t n) : n_(n) {
  if (n < 1) throw KernelError("fft: length must be >= 1, got " + std::to_string(n));
  tw_re_.resize(size_t(n));
  tw_im_.resize(size_t(n));
  for (int64_t j = 0; j < n; j++) {
    tw_re_[size_t(j)] = std::cos(2 * kPi * double(j) / double(n));
    tw_im_[size_t(j)] = -std::sin(2 * kPi * double(j) / double(n));
  }
  factors_ = factorize(n);
  bool direct = true;
  for (int64_t p : factors_) direct = direct && p <= kMaxDirectRadix;
  if (direct) {
    // stage i (s = product of the radices before it, N = n / s = P m) reads w_N^{j p} = w_n^{j p s}
    int64_t s = 1;
    for (int64_t P : factors_) {
      const int64_t m = n / s / P;
      std::vector<double> re(size_t(m * (P - 1))), im(size_t(m * (P - 1)));
      for (int64_t p = 0; p < m; p++)
        for (int64_t j = 1; j < P; j++) {
          re[size_t(p * (P - 1) + j - 1)] = tw_re_[size_t(j * p * s)];
          im[size_t(p * (P - 1) + j - 1)] = tw_im_[size_t(j * p * s)];
        }
      stage_re_.push_back(std::move(re));
      stage_im_.push_back(std::move(im));
      s *= P;
    }
    return;
  }
  // Bluestein: X[k] = c[k] sum_j (x[j] c[j]) conj(c[k - j]), since jk = (j^2 + k^2 - (k - j)^2) / 2,
  // a circular convolution of length m >= 2n - 1 done with power-of-two FFTs
  factors_.clear();
  const int64_t m = next_pow2(2 * n - 1);
  inner_ = std::make_unique<FftPlan>(m);
  chirp_re_.resize(size_t(n));
  chirp_im_.resize(size_t(n));
  for (int64_t j = 0; j < n; j++) {
    // j^2 mod 2n keeps the angle small, so the chirp stays accurate for long lengths
    const int64_t q = int64_t((unsigned __int128)(j) * uint64_t(j) % uint64_t(2 * n));
    chirp_re_[size_t(j)] = std::cos(kPi * double(q) / double(n));
    chirp_im_[size_t(j)] = -std::sin(kPi * double(q) / double(n));
  }
  std::vector<double> br(size_t(m), 0.0), bi(size_t(m), 0.0), work(size_t(inner_->work_size(1)));
  br[0] = chirp_re_[0];
  bi[0] = -chirp_im_[0];
  for (int64_t j = 1; j < n; j++) {
    br[size_t(j)] = br[size_t(m - j)] = chirp_re_[size_t(j)];
    bi[size_t(j)] = bi[size_t(m - j)] = -chirp_im_[size_t(j)];
  }
  chirp_spec_re_.resize(size_t(m));
  chirp_spec_im_.resize(size_t(m));
  inner_->forward(br.data(), bi.data(), chirp_spec_re_.data(), chirp_spec_im_.data(), 1, work.data());
}

int64_t FftPlan::work_size(int64_t F) const {
  if (!inner_) return 2 * n_ * F;
  const int64_t m = inner_->size();
  return 4 * m * F + inner_->work_size(F);
}

void FftPlan::forward(const double* xr, const double* xi, double* yr, double* yi, int64_t F, double* work) const {
  if (inner_) bluestein(xr, xi, yr, yi, F, work);
  else if (n_ == 1) {
    for (int64_t f = 0; f < F; f++) yr[f] = xr[f], yi[f] = xi[f];
  } else {
    stockham(xr, xi, yr, yi, F, work);
  }
}

// Stages ping-pong between y and the work buffer, arranged so that the last one writes y; the
// F interleaved sequences are simply s = F more interleaved sequences from the first stage on.
void FftPlan::stockham(const double* xr, const double* xi, double* yr, double* yi, int64_t F, double* work) const {
  const bool avx2 = simd::level() >= 1;
  const size_t stages = factors_.size();
  double* wr = work;
  double* wi = work + n_ * F;
  int64_t s = F;
  for (size_t i = 0; i < stages; i++) {
    const bool to_y = (stages - 1 - i) % 2 == 0;
    double* outr = to_y ? yr : wr;
    double* outi = to_y ? yi : wi;
    const int64_t P = factors_[i], m = n_ * F / s / P;
    const double* sr = stage_re_[i].data();
    const double* si = stage_im_[i].data();
    if (avx2) isa_avx2::run_stage(xr, xi, outr, outi, P, m, s, sr, si, tw_re_.data(), tw_im_.data(), n_);
    else isa_base::run_stage(xr, xi, outr, outi, P, m, s, sr, si, tw_re_.data(), tw_im_.data(), n_);
    xr = outr;
    xi = outi;
    s *= P;
  }
}

void FftPlan::bluestein(const double* xr, const double* xi, double* yr, double* yi, int64_t F, double* work) const {
  const int64_t m = inner_->size(), mf = m * F;
  double* ar = work;
  double* ai = work + mf;
  double* sr = work + 2 * mf;
  double* si = work + 3 * mf;
  double* inner_work = work + 4 * mf;
  for (int64_t j = 0; j < n_; j++) {
    const double cr = chirp_re_[size_t(j)], ci = chirp_im_[size_t(j)];
    for (int64_t f = 0; f < F; f++) {
      const double a = xr[j * F + f], b = xi[j * F + f];
      ar[j * F + f] = a * cr - b * ci;
      ai[j * F + f] = a * ci + b * cr;
    }
  }
  for (int64_t i = n_ * F; i < mf; i++) ar[i] = ai[i] = 0;
  inner_->forward(ar, ai, sr, si, F, inner_work);
  // inverse FFT by conjugation: ifft(v) = conj(fft(conj(v))) / m
  for (int64_t j = 0; j < m; j++) {
    const double cr = chirp_spec_re_[size_t(j)], ci = chirp_spec_im_[size_t(j)];
    for (int64_t f = 0; f < F; f++) {
      const double a = sr[j * F + f], b = si[j * F + f];
      ar[j * F + f] = a * cr - b * ci;
      ai[j * F + f] = -(a * ci + b * cr);
    }
  }
  inner_->forward(ar, ai, sr, si, F, inner_work);
  const double inv = 1.0 / double(m);
  for (int64_t k = 0; k < n_; k++) {
    const double cr = chirp_re_[size_t(k)], ci = chirp_im_[size_t(k)];
    for (int64_t f = 0; f < F; f++) {
      const double a = sr[k * F + f] * inv, b = -si[k * F + f] * inv;  // conj(spec) / m
      yr[k * F + f] = a * cr - b * ci;
      yi[k * F + f] = a * ci + b * cr;
    }
  }
}

RealFftPlan::RealFftPlan(int64_t n) : n_(n), inner_(n % 2 == 0 ? n / 2 : n) {
  if (n % 2 == 0) {
    untangle_re_.resize(size_t(n / 2 + 1));
    untangle_im_.resize(size_t(n / 2 + 1));
    for (int64_t k = 0; k <= n / 2; k++) {
      untangle_re_[size_t(k)] = std::cos(2 * kPi * double(k) / double(n));
      untangle_im_[size_t(k)] = -std::sin(2 * kPi * double(k) / double(n));
    }
  }
}

int64_t RealFftPlan::work_size(int64_t F) const { return 4 * inner_.size() * F + inner_.work_size(F); }

void RealFftPlan::forward(const double* frames, int64_t F, double* re, double* im, double* work) const {
  const int64_t h = inner_.size(), hf = h * F;
  double* zr = work;
  double* zi = work + hf;
  double* sr = work + 2 * hf;
  double* si = work + 3 * hf;
  double* inner_work = work + 4 * hf;
  if (n_ % 2 == 1) {
    for (int64_t j = 0; j < n_; j++)
      for (int64_t f = 0; f < F; f++) zr[j * F + f] = frames[f * n_ + j], zi[j * F + f] = 0;
    inner_.forward(zr, zi, sr, si, F, inner_work);
    for (int64_t i = 0; i < (n_ / 2 + 1) * F; i++) re[i] = sr[i], im[i] = si[i];
    return;
  }
  // z[j] = x[2j] + i x[2j+1]: Z = E + i O with E, O the DFTs of the even and odd samples,
  // E[k] = (Z[k] + conj Z[h-k]) / 2, O[k] = -i (Z[k] - conj Z[h-k]) / 2, X[k] = E[k] + w_n^k O[k]
  for (int64_t j = 0; j < h; j++)
    for (int64_t f = 0; f < F; f++) zr[j * F + f] = frames[f * n_ + 2 * j], zi[j * F + f] = frames[f * n_ + 2 * j + 1];
  inner_.forward(zr, zi, sr, si, F, inner_work);
  for (int64_t k = 0; k <= h; k++) {
    const int64_t a = k == h ? 0 : k, b = k == 0 ? 0 : h - k;  // Z is h-periodic
    const double wr = untangle_re_[size_t(k)], wi = untangle_im_[size_t(k)];
    for (int64_t f = 0; f < F; f++) {
      const double zkr = sr[a * F + f], zki = si[a * F + f], zcr = sr[b * F + f], zci = -si[b * F + f];
      const double er = 0.5 * (zkr + zcr), ei = 0.5 * (zki + zci);
      const double dr = 0.5 * (zkr - zcr), di = 0.5 * (zki - zci);
      const double orr = di, oi = -dr;  // -i d
      re[k * F + f] = er + wr * orr - wi * oi;
      im[k * F + f] = ei + wr * oi + wi * orr;
    }
  }
}

namespace {
std::mutex plans_mutex;
std::map<int64_t, std::unique_ptr<RealFftPlan>> real_plans;
std::map<int64_t, std::unique_ptr<FftPlan>> complex_plans;

template <class Plan>
const Plan& cached(std::map<int64_t, std::unique_ptr<Plan>>& plans, int64_t n) {
  std::lock_guard<std::mutex> lock(plans_mutex);
  auto& slot = plans[n];
  if (!slot) slot = std::make_unique<Plan>(n);
  return *slot;
}
}  // namespace

const RealFftPlan& real_fft_plan(int64_t n) { return cached(real_plans, n); }
const FftPlan& fft_plan(int64_t n) { return cached(complex_plans, n); }

}  // namespace kestrel
