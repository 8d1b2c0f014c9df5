// Creation kernels (src/backend/kernels.ts): fill (any view, e.g. eye's diagonal), arange and
// random (contiguous out). Values are converted as the reference stores them (cast.h); random
// draws Philox4x32-10 exactly as src/tensor/rng.ts does.
#include <cmath>
#include <cstring>
#include <string>

#include "cast.h"
#include "philox.h"
#include "strided.h"

namespace kestrel {

namespace {

template <class U>
void fill_runs(const View& out, U pattern) {
  const View* vs[1] = {&out};
  Strided<1> s = make_strided(vs);
  const int64_t so = s.inner_stride(0);
  U* base = reinterpret_cast<U*>(out.data) + out.offset;
  parallel_run(s.numel, kGrain * 4, [&](int64_t begin, int64_t end) {
    walk(s, begin, end, [&](const int64_t* off, int64_t n) {
      U* p = base + off[0];
      if (so == 1) {
        for (int64_t i = 0; i < n; i++) p[i] = pattern;
      } else {
        for (int64_t i = 0; i < n; i++) p[i * so] = pattern;
      }
    });
  });
}

}  // namespace

// out[...] = value converted to out's dtype; out may be any strided view.
KESTREL_KERNEL(fill) {
  View out = args.view();
  double value = args.num();
  args.done();
  with_storage_type(out.dtype, [&](auto t) {
    using T = decltype(t);
    T v = from_double<T>(value);
    switch (sizeof(T)) {
      case 8: { uint64_t u; std::memcpy(&u, &v, 8); fill_runs(out, u); break; }
      case 4: { uint32_t u; std::memcpy(&u, &v, 4); fill_runs(out, u); break; }
      case 2: { uint16_t u; std::memcpy(&u, &v, 2); fill_runs(out, u); break; }
      default: { uint8_t u; std::memcpy(&u, &v, 1); fill_runs(out, u); break; }
    }
  });
}

// out[i] = start + i * step (computed in double) over contiguous out.
KESTREL_KERNEL(arange) {
  View out = args.view();
  double start = args.num(), step = args.num();
  args.done();
  require_contiguous("arange", out, "out");
  with_storage_type(out.dtype, [&](auto t) {
    using T = decltype(t);
    T* p = out.ptr<T>();
    parallel_run(out.numel(), kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; i++) p[i] = from_double<T>(start + double(i) * step);
    });
  });
}

namespace {

// Element i of a draw (rng.ts fillRandom): uniform uses word i%4 of block counter + i/4;
// normal uses words 2(i%2), 2(i%2)+1 of block counter + i/2 in Box-Muller (cos branch).
template <class T>
void draw(T* out, int64_t n, bool normal, PhiloxKey key, uint64_t counter) {
  const int per = normal ? 2 : 4;
  const int64_t blocks = (n + per - 1) / per;
  parallel_run(blocks, kGrain / 4, [&](int64_t b0, int64_t b1) {
    uint32_t w[4];
    for (int64_t b = b0; b < b1; b++) {
      philox4x32_10(key, counter + uint64_t(b), w);
      int64_t i0 = b * per;
      int m = int(std::min<int64_t>(per, n - i0));
      for (int j = 0; j < m; j++) {
        double v;
        if (!normal) {
          v = philox_uniform(w[j]);
        } else {
          double u1 = double((w[2 * j] >> 8) + 1) * kInv2Pow24;
          double u2 = philox_uniform(w[2 * j + 1]);
          v = std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
        }
        out[i0 + j] = from_double<T>(v);
      }
    }
  });
}

}  // namespace

// Contiguous float out; args: dist (0 uniform, 1 normal), seed low/high 32 bits, counter.
KESTREL_KERNEL(random) {
  View out = args.view();
  int64_t dist = args.i64(), lo = args.i64(), hi = args.i64(), counter = args.i64();
  args.done();
  if (dist != 0 && dist != 1) throw KernelError("random: unknown distribution code " + std::to_string(dist));
  if (lo < 0 || lo > 0xffffffffLL || hi < 0 || hi > 0xffffffffLL)
    throw KernelError("random: seed words out of range (" + std::to_string(lo) + ", " + std::to_string(hi) + ")");
  if (counter < 0) throw KernelError("random: negative counter " + std::to_string(counter));
  require_contiguous("random", out, "out");
  PhiloxKey key{uint32_t(lo), uint32_t(hi)};
  int64_t n = out.numel();
  switch (out.dtype) {
    case F32: draw(out.ptr<float>(), n, dist == 1, key, uint64_t(counter)); break;
    case F64: draw(out.ptr<double>(), n, dist == 1, key, uint64_t(counter)); break;
    case F16: draw(out.ptr<f16_t>(), n, dist == 1, key, uint64_t(counter)); break;
    case BF16: draw(out.ptr<bf16_t>(), n, dist == 1, key, uint64_t(counter)); break;
    default:
      throw KernelError(std::string("random: out has dtype ") + dtype_name(out.dtype) + " (expected a float dtype)");
  }
}

}  // namespace kestrel
