// Gated MLP activation (SwiGLU / GeGLU): out = act(gate) * up and its backward, which recomputes
// act(gate) from gate instead of keeping it (src/ops/fused/glu.ts has the maths). gate, up and dy
// may be strided views (the halves of a fused gate_up projection); runs whose inner stride is not
// 1 are gathered into a stack buffer. The spans (glu_spans.inc) are compiled for SSE2, AVX2+FMA
// and AVX-512 and picked by cpu_features(), as the elementwise kernels are.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "kernel_api.h"
#include "decode_parts.h"
#include "strided.h"

namespace kestrel {

#define KESTREL_VBYTES 16
namespace glu_sse2 {
#include "simd_math.h"
#include "glu_spans.inc"
}  // namespace glu_sse2
#undef KESTREL_VBYTES

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define KESTREL_VBYTES 32
namespace glu_avx2 {
#include "simd_math.h"
#include "glu_spans.inc"
}  // namespace glu_avx2
#undef KESTREL_VBYTES
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#define KESTREL_VBYTES 64
namespace glu_avx512 {
#include "simd_math.h"
#include "glu_spans.inc"
}  // namespace glu_avx512
#undef KESTREL_VBYTES
#pragma GCC pop_options

namespace {

struct GluIsa {
  const glu_sse2::GluForwardFn* forward;
  const glu_sse2::GluBackwardFn* backward;
};

const GluIsa& glu_isa() {
  static const GluIsa isa = [] {
    const CpuFeatures& f = cpu_features();
    if (f.avx512f && f.avx2 && f.fma) return GluIsa{glu_avx512::kGluForward, glu_avx512::kGluBackward};
    if (f.avx2 && f.fma) return GluIsa{glu_avx2::kGluForward, glu_avx2::kGluBackward};
    return GluIsa{glu_sse2::kGluForward, glu_sse2::kGluBackward};
  }();
  return isa;
}

constexpr int64_t kChunk = 512;    // elements per gathered block
constexpr int64_t kGrainGlu = 8192;  // elements per thread task (each costs an exp or two)

void need_f32(const char* k, const char* what, const View& v) {
  if (v.dtype != F32) throw KernelError(std::string(k) + ": " + what + " must be float32, got " + dtype_name(v.dtype) + " " + shape_str(v));
}

int act_code(const char* k, int64_t act) {
  if (act < 0 || act > 2) throw KernelError(std::string(k) + ": unknown activation code " + std::to_string(act));
  return int(act);
}

// p + off elements, or a gathered contiguous copy of m elements `stride` apart.
const float* run_of(const float* p, int64_t stride, int64_t m, float* buf) {
  if (stride == 1) return p;
  for (int64_t i = 0; i < m; i++) buf[i] = p[i * stride];
  return buf;
}

}  // namespace

void glu_span(int act, const float* gate, const float* up, float* out, int64_t n) { glu_isa().forward[act](gate, up, out, n); }

// out = act(gate) * up
KESTREL_KERNEL(glu) {
  const char* k = "glu";
  int act = act_code(k, args.i64());
  View gate = args.view(), up = args.view(), out = args.view();
  args.done();
  need_f32(k, "gate", gate);
  need_f32(k, "up", up);
  need_f32(k, "out", out);
  require_same_shape(k, gate, "gate", up, "up");
  require_same_shape(k, gate, "gate", out, "out");
  require_contiguous(k, out, "out");
  const View* vs[3] = {&out, &gate, &up};
  Strided<3> s = make_strided(vs);
  const int64_t sg = s.inner_stride(1), su = s.inner_stride(2);
  auto fn = glu_isa().forward[act];
  parallel_run(s.numel, kGrainGlu, [&](int64_t begin, int64_t end) {
    alignas(64) float bg[kChunk], bu[kChunk];
    walk(s, begin, end, [&](const int64_t* off, int64_t n) {
      const float *g = gate.ptr<float>() + off[1], *u = up.ptr<float>() + off[2];
      float* o = out.ptr<float>() + off[0];
      for (int64_t i = 0; i < n; i += kChunk) {
        int64_t m = std::min(kChunk, n - i);
        fn(run_of(g + i * sg, sg, m, bg), run_of(u + i * su, su, m, bu), o + i, m);
      }
    });
  });
}

// dgate = dy * up * act'(gate), dup = dy * act(gate); dgate and dup optional (null view)
KESTREL_KERNEL(glu_backward) {
  const char* k = "glu_backward";
  int act = act_code(k, args.i64());
  View gate = args.view(), up = args.view(), dy = args.view();
  View dgate, dup;
  bool has_dg = args.has_view();
  if (has_dg) dgate = args.view();
  bool has_du = args.has_view();
  if (has_du) dup = args.view();
  args.done();
  if (!has_dg && !has_du) return;
  need_f32(k, "gate", gate);
  need_f32(k, "up", up);
  need_f32(k, "dy", dy);
  require_same_shape(k, gate, "gate", up, "up");
  require_same_shape(k, gate, "gate", dy, "dy");
  auto need_out = [&](bool has, const View& v, const char* name) {
    if (!has) return;
    need_f32(k, name, v);
    require_same_shape(k, gate, "gate", v, name);
    require_contiguous(k, v, name);
  };
  need_out(has_dg, dgate, "dgate");
  need_out(has_du, dup, "dup");
  // dgate and dup are contiguous with one shape, so one offset serves both
  const View& o = has_dg ? dgate : dup;
  const View* vs[4] = {&o, &gate, &up, &dy};
  Strided<4> s = make_strided(vs);
  const int64_t sg = s.inner_stride(1), su = s.inner_stride(2), sd = s.inner_stride(3);
  auto fn = glu_isa().backward[act];
  parallel_run(s.numel, kGrainGlu, [&](int64_t begin, int64_t end) {
    alignas(64) float bg[kChunk], bu[kChunk], bd[kChunk];
    walk(s, begin, end, [&](const int64_t* off, int64_t n) {
      const float *g = gate.ptr<float>() + off[1], *u = up.ptr<float>() + off[2], *d = dy.ptr<float>() + off[3];
      float* dg = has_dg ? dgate.ptr<float>() + off[0] : nullptr;
      float* du = has_du ? dup.ptr<float>() + off[0] : nullptr;
      for (int64_t i = 0; i < n; i += kChunk) {
        int64_t m = std::min(kChunk, n - i);
        fn(run_of(g + i * sg, sg, m, bg), run_of(u + i * su, su, m, bu), run_of(d + i * sd, sd, m, bd),
           dg ? dg + i : nullptr, du ? du + i : nullptr, m);
      }
    });
  });
}

}  // namespace kestrel
