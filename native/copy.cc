// Kernel copy: dst[...] = src[...] with dtype conversion (cast.h), both strided, same shape.
// Dims are ordered by dst's strides and collapsed (strided.h); contiguous runs of one dtype
// are memcpy'd, float32 <-> float16/bfloat16 runs go through the vectorized converters of
// ew_isa.h, and a transpose (src contiguous along another dim than dst) is copied in square
// tiles so both sides stay in cache. Also memcpy_bench, the benchmark's memcpy baseline.
#include <algorithm>
#include <cstring>
#include <string>

#include "cast.h"
#include "ew_isa.h"
#include "strided.h"

namespace kestrel {

namespace {

template <class S, class D>
void convert_run(const S* s, int64_t ss, D* d, int64_t sd, int64_t n) {
  if (ss == 1 && sd == 1) {
    if constexpr (std::is_same<S, D>::value) std::memcpy(d, s, size_t(n) * sizeof(S));
    else for (int64_t i = 0; i < n; i++) d[i] = cast<S, D>(s[i]);
  } else {
    for (int64_t i = 0; i < n; i++) d[i * sd] = cast<S, D>(s[i * ss]);
  }
}

// The vectorized converter for contiguous runs of (S, D), or null.
template <class S, class D>
ew::ConvertFn fast_converter() {
  const ew::IsaTable& t = ew::isa();
  if constexpr (std::is_same<S, float>::value && std::is_same<D, f16_t>::value) return t.f32_to_f16;
  if constexpr (std::is_same<S, f16_t>::value && std::is_same<D, float>::value) return t.f16_to_f32;
  if constexpr (std::is_same<S, float>::value && std::is_same<D, bf16_t>::value) return t.f32_to_bf16;
  if constexpr (std::is_same<S, bf16_t>::value && std::is_same<D, float>::value) return t.bf16_to_f32;
  return nullptr;
}

// Copies the plane of dims (a, b) = (s.ndim-1, k) in kTile x kTile tiles: dst is contiguous
// along the last dim, src along dim k, so row-by-row either side would miss the cache.
template <class S, class D>
void copy_tiled(const Strided<2>& s, int k, const S* src, D* dst) {
  // kTi along dim k (src-contiguous) by kTj along the last dim (dst-contiguous). Square 64 x 64
  // tiles measured best among 16..1024 x 16..256 on a 4096 x 4096 float32 transpose.
  constexpr int64_t kTi = 64, kTj = 64;
  const int nd = s.ndim, last = nd - 1;
  const int64_t n0 = s.shape[k], n1 = s.shape[last];
  const int64_t t0 = (n0 + kTi - 1) / kTi, t1 = (n1 + kTj - 1) / kTj;
  int64_t outer = 1;
  for (int d = 0; d < nd; d++)
    if (d != k && d != last) outer *= s.shape[d];
  const int64_t sd0 = s.stride[0][k], sd1 = s.stride[0][last], ss0 = s.stride[1][k], ss1 = s.stride[1][last];
  parallel_run(outer * t0 * t1, 16, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; task++) {
      int64_t j0 = (task % t1) * kTj, i0 = (task / t1 % t0) * kTi, o = task / (t1 * t0);
      int64_t od = 0, os = 0;
      for (int d = nd - 1; d >= 0; d--) {  // the outer dims' offsets (one division per tile)
        if (d == k || d == last) continue;
        int64_t id = o % s.shape[d];
        o /= s.shape[d];
        od += id * s.stride[0][d];
        os += id * s.stride[1][d];
      }
      const int64_t i1 = std::min(n0, i0 + kTi), j1 = std::min(n1, j0 + kTj);
      if constexpr (std::is_same<S, D>::value && sizeof(S) == 4) {
        if (sd1 == 1 && ss0 == 1) {  // the common case: registers do the transpose
          ew::isa().transpose32(src + os + i0 + j0 * ss1, ss1, dst + od + i0 * sd0 + j0, sd0, i1 - i0, j1 - j0);
          continue;
        }
      }
      for (int64_t i = i0; i < i1; i++) {
        D* dp = dst + od + i * sd0;
        const S* sp = src + os + i * ss0;
        for (int64_t j = j0; j < j1; j++) dp[j * sd1] = cast<S, D>(sp[j * ss1]);
      }
    }
  });
}

template <class S, class D>
void copy_typed(const View& src, const View& dst) {
  const View* vs[2] = {&dst, &src};
  Strided<2> s = make_strided(vs, 0);
  const S* sp = reinterpret_cast<const S*>(src.data) + src.offset;
  D* dp = reinterpret_cast<D*>(dst.data) + dst.offset;
  const int64_t ss = s.inner_stride(1), sd = s.inner_stride(0);
  if (s.ndim >= 2 && sd == 1 && ss != 1 && s.inner() >= 8) {
    for (int k = s.ndim - 2; k >= 0; k--)
      if (s.stride[1][k] == 1 && s.shape[k] >= 8) return copy_tiled<S, D>(s, k, sp, dp);
  }
  ew::ConvertFn fast = fast_converter<S, D>();
  parallel_run(s.numel, kGrain, [&](int64_t begin, int64_t end) {
    walk(s, begin, end, [&](const int64_t* off, int64_t n) {
      if (fast && ss == 1 && sd == 1) fast(sp + off[1], dp + off[0], n);
      else convert_run(sp + off[1], ss, dp + off[0], sd, n);
    });
  });
}

// memcpy of n bytes split across the pool.
void parallel_memcpy(char* dst, const char* src, int64_t n) {
  constexpr int64_t kBlock = 1 << 16;
  int64_t blocks = (n + kBlock - 1) / kBlock;
  parallel_run(blocks, 4, [&](int64_t b0, int64_t b1) {
    int64_t lo = b0 * kBlock, hi = std::min(n, b1 * kBlock);
    std::memcpy(dst + lo, src + lo, size_t(hi - lo));
  });
}

}  // namespace

// dst[...] = src[...] with dtype conversion; both strided, same shape.
KESTREL_KERNEL(copy) {
  View src = args.view(), dst = args.view();
  args.done();
  require_same_shape("copy", src, "src", dst, "dst");
  if (src.numel() == 0) return;
  if (src.dtype == dst.dtype && src.contiguous() && dst.contiguous()) {
    const int64_t es = int64_t(dtype_size(src.dtype));
    return parallel_memcpy(dst.data + dst.offset * es, src.data + src.offset * es, src.numel() * es);
  }
  with_storage_type(src.dtype, [&](auto s) {
    with_storage_type(dst.dtype, [&](auto d) { copy_typed<decltype(s), decltype(d)>(src, dst); });
  });
}

// The benchmark's memcpy baseline (bench/elementwise.ts): std::memcpy of src's bytes into dst
// in parallel chunks, the same split the copy kernel uses; both contiguous, same byte size.
KESTREL_KERNEL(memcpy_bench) {
  View src = args.view(), dst = args.view();
  args.done();
  require_contiguous("memcpy_bench", src, "src");
  require_contiguous("memcpy_bench", dst, "dst");
  const int64_t sb = src.numel() * int64_t(dtype_size(src.dtype)), db = dst.numel() * int64_t(dtype_size(dst.dtype));
  if (sb != db) throw KernelError("memcpy_bench: src has " + std::to_string(sb) + " bytes, dst " + std::to_string(db));
  parallel_memcpy(dst.data + dst.offset * int64_t(dtype_size(dst.dtype)), src.data + src.offset * int64_t(dtype_size(src.dtype)), sb);
}

}  // namespace kestrel
