// FFT plans of any length (fft.h): the mixed-radix recursion, its butterflies, Bluestein's
// chirp-z for large prime factors, and the real-input untangling.
#include "fft.h"

#include <cmath>
#include <map>
#include <mutex>

#include "kernel_api.h"

namespace kestrel {
namespace {

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
  twiddles_.resize(size_t(n));
  for (int64_t j = 0; j < n; j++) twiddles_[size_t(j)] = std::polar(1.0, -2 * kPi * double(j) / double(n));
  factors_ = factorize(n);
  bool direct = true;
  for (int64_t p : factors_) direct = direct && p <= kMaxDirectRadix;
  if (direct) return;
  // Bluestein: X[k] = c[k] sum_j (x[j] c[j]) conj(c[k - j]), since jk = (j^2 + k^2 - (k - j)^2) / 2,
  // a circular convolution of length m >= 2n - 1 done with power-of-two FFTs
  factors_.clear();
  int64_t m = next_pow2(2 * n - 1);
  inner_ = std::make_unique<FftPlan>(m);
  chirp_.resize(size_t(n));
  for (int64_t j = 0; j < n; j++) {
    // j^2 mod 2n keeps the angle small, so the chirp stays accurate for long lengths
    int64_t q = int64_t((unsigned __int128)(j) * uint64_t(j) % uint64_t(2 * n));
    chirp_[size_t(j)] = std::polar(1.0, -kPi * double(q) / double(n));
  }
  std::vector<cplx> b(size_t(m), cplx(0, 0)), work(size_t(inner_->scratch_size()));
  b[0] = std::conj(chirp_[0]);
  for (int64_t j = 1; j < n; j++) b[size_t(j)] = b[size_t(m - j)] = std::conj(chirp_[size_t(j)]);
  chirp_spectrum_.resize(size_t(m));
  inner_->forward(b.data(), chirp_spectrum_.data(), work.data());
}

int64_t FftPlan::scratch_size() const {
  return inner_ ? 2 * inner_->size() + inner_->scratch_size() : 0;
}

void FftPlan::forward(const cplx* in, cplx* out, cplx* scratch) const {
  if (inner_) bluestein(in, out, scratch);
  else if (n_ == 1) out[0] = in[0];
  else mixed_radix(in, 1, out, 0, scratch);
}

// One level of the decimation in time: the sub-transform of length len = n / stride splits into
// p interleaved sub-sequences of length m (each transformed by the next level into out[r*m ..]),
// then X[k + m s] = sum_r (w_len^{r k} X_r[k]) w_p^{r s} for k < m, s < p, in place.
void FftPlan::mixed_radix(const cplx* in, int64_t stride, cplx* out, int level, cplx* scratch) const {
  const int64_t p = factors_[size_t(level)], m = n_ / stride / p;
  if (m == 1) {
    for (int64_t r = 0; r < p; r++) out[r] = in[r * stride];
  } else {
    for (int64_t r = 0; r < p; r++) mixed_radix(in + r * stride, stride * p, out + r * m, level + 1, scratch);
  }
  const cplx* tw = twiddles_.data();
  cplx t[kMaxDirectRadix + 1];
  for (int64_t k = 0; k < m; k++) {
    t[0] = out[k];
    for (int64_t r = 1; r < p; r++) t[r] = out[r * m + k] * tw[r * k * stride];
    if (p == 2) {
      out[k] = t[0] + t[1];
      out[k + m] = t[0] - t[1];
    } else if (p == 4) {
      // w_4 = -i: y1 = t0 - i t1 - t2 + i t3, y3 = t0 + i t1 - t2 - i t3
      const cplx a = t[0] + t[2], b = t[0] - t[2], c = t[1] + t[3];
      const cplx d(t[1].imag() - t[3].imag(), t[3].real() - t[1].real());  // -i (t1 - t3)
      out[k] = a + c;
      out[k + m] = b + d;
      out[k + 2 * m] = a - c;
      out[k + 3 * m] = b - d;
    } else if (p == 3) {
      // w_3 = -1/2 - i sqrt(3)/2
      const cplx a = t[1] + t[2], b = t[1] - t[2];
      const cplx base = t[0] - 0.5 * a;
      const cplx rot(0.86602540378443864676 * b.imag(), -0.86602540378443864676 * b.real());  // -i sqrt(3)/2 b
      out[k] = t[0] + a;
      out[k + m] = base + rot;
      out[k + 2 * m] = base - rot;
    } else {
      // generic odd radix: w_p^{rs} = w_n^{((r s) mod p) n / p}
      const int64_t step = n_ / p;
      for (int64_t s = 0; s < p; s++) {
        cplx acc = t[0];
        int64_t rs = 0;
        for (int64_t r = 1; r < p; r++) {
          rs += s;
          if (rs >= p) rs -= p;
          acc += t[r] * tw[rs * step];
        }
        out[k + s * m] = acc;
      }
    }
  }
}

void FftPlan::bluestein(const cplx* in, cplx* out, cplx* scratch) const {
  const int64_t m = inner_->size();
  cplx* a = scratch;
  cplx* spec = scratch + m;
  cplx* work = scratch + 2 * m;
  for (int64_t j = 0; j < n_; j++) a[j] = in[j] * chirp_[size_t(j)];
  for (int64_t j = n_; j < m; j++) a[j] = 0;
  inner_->forward(a, spec, work);
  // inverse FFT by conjugation: ifft(y) = conj(fft(conj(y))) / m
  for (int64_t j = 0; j < m; j++) a[j] = std::conj(spec[j] * chirp_spectrum_[size_t(j)]);
  inner_->forward(a, spec, work);
  const double inv = 1.0 / double(m);
  for (int64_t k = 0; k < n_; k++) out[k] = chirp_[size_t(k)] * std::conj(spec[k]) * inv;
}

RealFftPlan::RealFftPlan(int64_t n) : n_(n), half_(n % 2 == 0 ? n / 2 : n) {
  if (n % 2 == 0) {
    untangle_.resize(size_t(n / 2 + 1));
    for (int64_t k = 0; k <= n / 2; k++) untangle_[size_t(k)] = std::polar(1.0, -2 * kPi * double(k) / double(n));
  }
}

int64_t RealFftPlan::scratch_size() const { return 2 * half_.size() + half_.scratch_size(); }

void RealFftPlan::forward(const double* in, cplx* out, cplx* scratch) const {
  const int64_t h = half_.size();
  cplx* z = scratch;
  cplx* spec = scratch + h;
  if (n_ % 2 == 1) {
    for (int64_t j = 0; j < n_; j++) z[j] = cplx(in[j], 0);
    half_.forward(z, spec, scratch + 2 * h);
    for (int64_t k = 0; k <= n_ / 2; k++) out[k] = spec[k];
    return;
  }
  // z[j] = x[2j] + i x[2j+1]: Z = E + i O with E, O the DFTs of the even and odd samples,
  // E[k] = (Z[k] + conj Z[h-k]) / 2, O[k] = -i (Z[k] - conj Z[h-k]) / 2, X[k] = E[k] + w_n^k O[k]
  for (int64_t j = 0; j < h; j++) z[j] = cplx(in[2 * j], in[2 * j + 1]);
  half_.forward(z, spec, scratch + 2 * h);
  for (int64_t k = 0; k <= h; k++) {
    const cplx zk = spec[k % h], zc = std::conj(spec[(h - k) % h]);
    const cplx e = 0.5 * (zk + zc), d = 0.5 * (zk - zc);
    const cplx o(d.imag(), -d.real());
    out[k] = e + untangle_[size_t(k)] * o;
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
