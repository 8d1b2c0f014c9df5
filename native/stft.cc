// The short-time Fourier transform of float32 signals (src/backend/kernels.ts `stft`): frames of
// n_fft samples every hop, centre padding (reflect or zeros) read in place, a window, one real
// FFT per frame (fft.h), written as complex pairs, power |X|^2 or magnitude |X| in torch's
// [B, freq, frames] order. Frames are split over the thread pool; each thread reuses its buffers.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "fft.h"
#include "kernel_api.h"

namespace kestrel {
namespace {

enum StftMode : int64_t { kComplex = 0, kPower = 1, kMagnitude = 2 };

[[noreturn]] void fail(const std::string& why) { throw KernelError("stft: " + why); }

// Per-thread buffers, grown on first use and reused (no allocation per call once warm).
struct FrameBuffers {
  std::vector<double> frames, re, im, work;
};
thread_local FrameBuffers buffers;

struct StftShape {
  int64_t B, L, n_fft, hop, pad, frames, n_freq;
  bool reflect, onesided;
  int64_t mode;
};

void check_args(const View& x, const View& window, const View& out, const StftShape& s) {
  if (x.dtype != F32 || !x.contiguous() || x.ndim != 2) fail("signal must be contiguous float32 [B, L], got " + std::string(dtype_name(x.dtype)) + " " + shape_str(x));
  if (window.dtype != F32 || !window.contiguous() || window.numel() != s.n_fft)
    fail("window must be contiguous float32 with n_fft = " + std::to_string(s.n_fft) + " elements, got " + shape_str(window));
  if (s.n_fft < 1 || s.n_fft > (int64_t(1) << 24)) fail("n_fft must be in [1, 2^24], got " + std::to_string(s.n_fft));
  if (s.hop < 1) fail("hop must be >= 1, got " + std::to_string(s.hop));
  if (s.pad < 0 || s.frames < 0) fail("pad and frame count must be >= 0");
  if (s.mode < kComplex || s.mode > kMagnitude) fail("mode must be 0 (complex), 1 (power) or 2 (magnitude)");
  if (s.frames > 0 && s.B > 0) {
    // every index a frame reads, before padding is resolved
    const int64_t lo = -s.pad, hi = (s.frames - 1) * s.hop - s.pad + s.n_fft - 1;
    if (s.reflect && (s.L < 1 || -lo > s.L - 1 || hi - (s.L - 1) > s.L - 1))
      fail("reflect padding reads indices [" + std::to_string(lo) + ", " + std::to_string(hi) + "] of a " + std::to_string(s.L) +
           "-sample signal: it needs more than " + std::to_string(std::max(-lo, hi - s.L + 1)) + " samples");
  }
  const bool complex = s.mode == kComplex;
  const int want_ndim = complex ? 4 : 3;
  bool ok = out.dtype == F32 && out.contiguous() && out.ndim == want_ndim && out.shape[0] == s.B && out.shape[1] == s.n_freq &&
            out.shape[2] == s.frames && (!complex || out.shape[3] == 2);
  if (!ok)
    fail("out " + std::string(dtype_name(out.dtype)) + " " + shape_str(out) + " must be contiguous float32 [" + std::to_string(s.B) + ", " +
         std::to_string(s.n_freq) + ", " + std::to_string(s.frames) + (complex ? ", 2]" : "]"));
}

// Sample i of the padded signal (i may lie before 0 or past L - 1; check_args bounded it).
inline float padded_sample(const float* x, int64_t L, int64_t i, bool reflect) {
  if (i >= 0 && i < L) return x[i];
  if (!reflect) return 0.0f;
  return x[i < 0 ? -i : 2 * (L - 1) - i];
}

// Frames are done in tiles of kTile consecutive frames of one row, transformed together (the
// FFT's batch), so bin k of the tile's frames lands contiguously in out's [freq, frames] rows.
constexpr int64_t kTile = 16;

void stft_frames(const float* x, const float* window, float* out, const StftShape& s, int64_t begin, int64_t end) {
  const RealFftPlan& plan = real_fft_plan(s.n_fft);
  FrameBuffers& b = buffers;
  const int64_t half = s.n_fft / 2, bins = half + 1;
  b.frames.resize(size_t(kTile * s.n_fft));
  b.re.resize(size_t(kTile * bins));
  b.im.resize(size_t(kTile * bins));
  b.work.resize(size_t(plan.work_size(kTile)));
  for (int64_t f = begin; f < end;) {
    const int64_t row = f / s.frames, t0 = f % s.frames;
    const int64_t count = std::min({kTile, end - f, s.frames - t0});
    const float* sig = x + row * s.L;
    for (int64_t j = 0; j < count; j++) {
      const int64_t start = (t0 + j) * s.hop - s.pad;
      double* frame = b.frames.data() + j * s.n_fft;
      if (start >= 0 && start + s.n_fft <= s.L) {
        for (int64_t i = 0; i < s.n_fft; i++) frame[i] = double(sig[start + i]) * window[i];  // inside: no padding
      } else {
        for (int64_t i = 0; i < s.n_fft; i++) frame[i] = double(padded_sample(sig, s.L, start + i, s.reflect)) * window[i];
      }
    }
    plan.forward(b.frames.data(), count, b.re.data(), b.im.data(), b.work.data());
    float* o = out + (row * s.n_freq * s.frames + t0) * (s.mode == kComplex ? 2 : 1);
    for (int64_t k = 0; k < s.n_freq; k++) {
      // bins past n/2 (two-sided output) are the conjugates of the mirrored ones: real input
      const int64_t src = k <= half ? k : s.n_fft - k;
      const double sign = k <= half ? 1.0 : -1.0;
      const double* re = b.re.data() + src * count;
      const double* im = b.im.data() + src * count;
      if (s.mode == kComplex) {
        float* ok = o + 2 * k * s.frames;
        for (int64_t j = 0; j < count; j++) ok[2 * j] = float(re[j]), ok[2 * j + 1] = float(sign * im[j]);
      } else if (s.mode == kPower) {
        float* ok = o + k * s.frames;
        for (int64_t j = 0; j < count; j++) ok[j] = float(re[j] * re[j] + im[j] * im[j]);
      } else {
        float* ok = o + k * s.frames;
        for (int64_t j = 0; j < count; j++) ok[j] = float(std::sqrt(re[j] * re[j] + im[j] * im[j]));
      }
    }
    f += count;
  }
}

}  // namespace

// stft(x [B, L], window [n_fft], n_fft, hop, pad, frames, reflect, onesided, mode, out)
KESTREL_KERNEL(stft) {
  View x = args.view(), window = args.view();
  StftShape s{};
  s.n_fft = args.i64();
  s.hop = args.i64();
  s.pad = args.i64();
  s.frames = args.i64();
  s.reflect = args.flag();
  s.onesided = args.flag();
  s.mode = args.i64();
  View out = args.view();
  args.done();
  s.B = x.ndim == 2 ? x.shape[0] : 0;
  s.L = x.ndim == 2 ? x.shape[1] : 0;
  s.n_freq = s.onesided ? s.n_fft / 2 + 1 : s.n_fft;
  check_args(x, window, out, s);
  const int64_t total = s.B * s.frames;
  if (total == 0) return;
  real_fft_plan(s.n_fft);  // built once here, not raced for by the pool threads
  const float* xp = x.ptr<float>();
  const float* wp = window.ptr<float>();
  float* op = out.ptr<float>();
  parallel_for(total, 16, [&](int64_t begin, int64_t end) { stft_frames(xp, wp, op, s, begin, end); });
}

// fft(x [B, n, 2], out [B, n, 2]): the complex DFT of each row (float64 inside), for tests of the
// plans on their own and for callers that need a full complex transform.
KESTREL_KERNEL(fft) {
  View x = args.view(), out = args.view();
  args.done();
  if (x.dtype != F32 || !x.contiguous() || x.ndim != 3 || x.shape[2] != 2)
    throw KernelError("fft: x must be contiguous float32 [B, n, 2] (real, imag), got " + std::string(dtype_name(x.dtype)) + " " + shape_str(x));
  if (out.dtype != F32 || !out.contiguous() || out.ndim != 3 || out.shape[0] != x.shape[0] || out.shape[1] != x.shape[1] || out.shape[2] != 2)
    throw KernelError("fft: out " + shape_str(out) + " must be contiguous float32 of x's shape " + shape_str(x));
  const int64_t B = x.shape[0], n = x.shape[1];
  if (B == 0 || n == 0) return;
  if (n > (int64_t(1) << 24)) throw KernelError("fft: length must be <= 2^24, got " + std::to_string(n));
  const FftPlan& plan = fft_plan(n);
  const float* xp = x.ptr<float>();
  float* op = out.ptr<float>();
  parallel_for(B, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> xr(static_cast<size_t>(n)), xi(static_cast<size_t>(n)), yr(static_cast<size_t>(n)), yi(static_cast<size_t>(n));
    std::vector<double> work(static_cast<size_t>(plan.work_size(1)));
    for (int64_t r = begin; r < end; r++) {
      for (int64_t j = 0; j < n; j++) xr[size_t(j)] = xp[(r * n + j) * 2], xi[size_t(j)] = xp[(r * n + j) * 2 + 1];
      plan.forward(xr.data(), xi.data(), yr.data(), yi.data(), 1, work.data());
      for (int64_t j = 0; j < n; j++) op[(r * n + j) * 2] = float(yr[size_t(j)]), op[(r * n + j) * 2 + 1] = float(yi[size_t(j)]);
    }
  });
}

}  // namespace kestrel
