// FFT plans of any length (fft.h): the Stockham stages, their butterflies, Bluestein's
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

// Plain complex product: std::complex's operator* goes through __muldc3 (C99 Annex G inf/NaN
// recovery) unless -ffast-math, several times slower in these loops; inputs here are finite.
inline cplx mul(cplx a, cplx b) {
  return cplx(a.real() * b.real() - a.imag() * b.imag(), a.real() * b.imag() + a.imag() * b.real());
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
  if (direct) {
    // stage i (s = product of the radices before it, N = n / s = P m) reads w_N^{j p} = w_n^{j p s}
    int64_t s = 1;
    for (int64_t P : factors_) {
      const int64_t m = n / s / P;
      std::vector<cplx> stage(size_t(m * (P - 1)));
      for (int64_t p = 0; p < m; p++)
        for (int64_t j = 1; j < P; j++) stage[size_t(p * (P - 1) + j - 1)] = twiddles_[size_t(j * p * s)];
      stage_twiddles_.push_back(std::move(stage));
      s *= P;
    }
    return;
  }
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
  return inner_ ? 2 * inner_->size() + inner_->scratch_size() : n_;
}

void FftPlan::forward(const cplx* in, cplx* out, cplx* scratch) const {
  if (inner_) bluestein(in, out, scratch);
  else if (n_ == 1) out[0] = in[0];
  else mixed_radix(in, out, scratch);
}

// One level of the decimation in time: the sub-transform of length len = n / stride splits into
// p interleaved sub-sequences of length m (each transformed by the next level into out[r*m ..]),
// then X[k + m s] = sum_r (w_len^{r k} X_r[k]) w_p^{r s} for k < m, s < p, in place.
namespace {

// y[j] = sum_r a[r] w_P^{r j} for the fixed radices.
template <int P>
inline void butterfly(const cplx* a, cplx* y) {
  if constexpr (P == 2) {
    y[0] = a[0] + a[1];
    y[1] = a[0] - a[1];
  } else if constexpr (P == 4) {
    // w_4 = -i: y1 = a0 - i a1 - a2 + i a3, y3 = a0 + i a1 - a2 - i a3
    const cplx s = a[0] + a[2], d = a[0] - a[2], c = a[1] + a[3];
    const cplx e(a[1].imag() - a[3].imag(), a[3].real() - a[1].real());  // -i (a1 - a3)
    y[0] = s + c;
    y[1] = d + e;
    y[2] = s - c;
    y[3] = d - e;
  } else if constexpr (P == 3) {
    // w_3 = -1/2 - i sqrt(3)/2
    const cplx s = a[1] + a[2], d = a[1] - a[2];
    const cplx base = a[0] - 0.5 * s;
    const cplx rot(0.86602540378443864676 * d.imag(), -0.86602540378443864676 * d.real());  // -i sqrt(3)/2 d
    y[0] = a[0] + s;
    y[1] = base + rot;
    y[2] = base - rot;
  } else {
    static_assert(P == 5, "radix 2, 3, 4 or 5");
    // c_j = cos(2 pi j / 5), s_j = sin(2 pi j / 5): y1,4 = a0 + c1 s1' + c2 s2' -/+ i (s1 d1 + s2 d2),
    // y2,3 = a0 + c2 s1' + c1 s2' -/+ i (s2 d1 - s1 d2), s1' = a1 + a4, s2' = a2 + a3, d1 = a1 - a4, d2 = a2 - a3
    const double c1 = 0.30901699437494742410, c2 = -0.80901699437494742410;
    const double s1 = 0.95105651629515357212, s2 = 0.58778525229247312917;
    const cplx p1 = a[1] + a[4], p2 = a[2] + a[3], d1 = a[1] - a[4], d2 = a[2] - a[3];
    const cplx e1 = a[0] + c1 * p1 + c2 * p2, e2 = a[0] + c2 * p1 + c1 * p2;
    const cplx o1 = s1 * d1 + s2 * d2, o2 = s2 * d1 - s1 * d2;
    const cplx r1(o1.imag(), -o1.real()), r2(o2.imag(), -o2.real());  // -i o
    y[0] = a[0] + p1 + p2;
    y[1] = e1 + r1;
    y[4] = e1 - r1;
    y[2] = e2 + r2;
    y[3] = e2 - r2;
  }
}

// One Stockham (self-sorting, decimation in frequency) stage of radix P over s interleaved
// sequences of length N = P m: y[q + s (P p + j)] = w_N^{j p} sum_r x[q + s (p + r m)] w_P^{r j},
// with stage[p (P - 1) + j - 1] = w_N^{j p}. The inner loop runs over q: contiguous in x and y.
template <int P>
void stockham_stage(const cplx* x, cplx* y, int64_t m, int64_t s, const cplx* stage) {
  for (int64_t p = 0; p < m; p++) {
    const cplx* w = stage + p * (P - 1);
    for (int64_t q = 0; q < s; q++) {
      cplx a[P], b[P];
      for (int r = 0; r < P; r++) a[r] = x[q + s * (p + r * m)];
      butterfly<P>(a, b);
      cplx* o = y + q + s * P * p;
      o[0] = b[0];
      for (int j = 1; j < P; j++) o[s * j] = mul(b[j], w[j - 1]);
    }
  }
}

// The same stage for any odd radix P <= kMaxDirectRadix: O(P^2) with w_P^{r j} = w_n^{((r j) mod P) n / P}.
void generic_stage(const cplx* x, cplx* y, int64_t P, int64_t m, int64_t s, const cplx* stage, const cplx* tw, int64_t n) {
  const int64_t step = n / P;
  cplx a[kMaxDirectRadix];
  for (int64_t p = 0; p < m; p++) {
    const cplx* w = stage + p * (P - 1);
    for (int64_t q = 0; q < s; q++) {
      for (int64_t r = 0; r < P; r++) a[r] = x[q + s * (p + r * m)];
      cplx* o = y + q + s * P * p;
      for (int64_t j = 0; j < P; j++) {
        cplx acc = a[0];
        int64_t rj = 0;
        for (int64_t r = 1; r < P; r++) {
          rj += j;
          if (rj >= P) rj -= P;
          acc += mul(a[r], tw[rj * step]);
        }
        o[s * j] = j == 0 ? acc : mul(acc, w[j - 1]);
      }
    }
  }
}

}  // namespace

// Stages ping-pong between out and the scratch buffer, arranged so the last one writes out.
void FftPlan::mixed_radix(const cplx* in, cplx* out, cplx* work) const {
  const size_t stages = factors_.size();
  const cplx* x = in;
  int64_t s = 1;
  for (size_t i = 0; i < stages; i++) {
    cplx* y = (stages - 1 - i) % 2 == 0 ? out : work;
    const int64_t P = factors_[i], m = n_ / s / P;
    const cplx* stage = stage_twiddles_[i].data();
    switch (P) {
      case 2: stockham_stage<2>(x, y, m, s, stage); break;
      case 3: stockham_stage<3>(x, y, m, s, stage); break;
      case 4: stockham_stage<4>(x, y, m, s, stage); break;
      case 5: stockham_stage<5>(x, y, m, s, stage); break;
      default: generic_stage(x, y, P, m, s, stage, twiddles_.data(), n_);
    }
    x = y;
    s *= P;
  }
}

void FftPlan::bluestein(const cplx* in, cplx* out, cplx* scratch) const {
  const int64_t m = inner_->size();
  cplx* a = scratch;
  cplx* spec = scratch + m;
  cplx* work = scratch + 2 * m;
  for (int64_t j = 0; j < n_; j++) a[j] = mul(in[j], chirp_[size_t(j)]);
  for (int64_t j = n_; j < m; j++) a[j] = 0;
  inner_->forward(a, spec, work);
  // inverse FFT by conjugation: ifft(y) = conj(fft(conj(y))) / m
  for (int64_t j = 0; j < m; j++) a[j] = std::conj(mul(spec[j], chirp_spectrum_[size_t(j)]));
  inner_->forward(a, spec, work);
  const double inv = 1.0 / double(m);
  for (int64_t k = 0; k < n_; k++) out[k] = mul(chirp_[size_t(k)], std::conj(spec[k])) * inv;
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
    const int64_t a = k == h ? 0 : k, b = k == 0 ? 0 : h - k;  // Z is h-periodic
    const cplx zk = spec[a], zc = std::conj(spec[b]);
    const cplx e = 0.5 * (zk + zc), d = 0.5 * (zk - zc);
    const cplx o(d.imag(), -d.real());
    out[k] = e + mul(untangle_[size_t(k)], o);
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
