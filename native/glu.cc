// Gated MLP activation (SwiGLU / GeGLU): out = act(gate) * up and its backward, which recomputes
// act(gate) from gate instead of keeping it (src/ops/fused/glu.ts has the maths). gate, up and dy
// may be strided views (the halves of a fused gate_up projection); runs whose inner stride is not
// 1 are gathered into a stack buffer. Every operand may also be bfloat16 or float16 (each on its
// own): a half input is widened chunk by chunk into that stack buffer and a half output computed
// there in float32 and rounded once, so the values are those of the float32 kernel on the widened
// inputs, rounded (what the half_operands wrapper would give, without its full-size scratch copies:
// a bf16 MoE's SiLU*up reads and writes bf16 in one pass). The spans (glu_spans.inc) are compiled
// for SSE2, AVX2+FMA and AVX-512 and picked by cpu_features(), as the elementwise kernels are.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "ew_isa.h"
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

bool is_half(const View& v) { return v.dtype == BF16 || v.dtype == F16; }

void need_float(const char* k, const char* what, const View& v) {
  if (v.dtype != F32 && !is_half(v))
    throw KernelError(std::string(k) + ": " + what + " must be float32, bfloat16 or float16, got " + dtype_name(v.dtype) + " " +
                      shape_str(v));
}

int act_code(const char* k, int64_t act) {
  if (act < 0 || act > 2) throw KernelError(std::string(k) + ": unknown activation code " + std::to_string(act));
  return int(act);
}

// m float32 values of v from element offset off, `stride` apart: a pointer into a float32 run,
// else a copy in buf (gathered, and widened from half with the elementwise kernels' converters).
const float* run_of(const View& v, int64_t off, int64_t stride, int64_t m, float* buf) {
  if (v.dtype == F32) {
    const float* p = v.ptr<float>() + off;
    if (stride == 1) return p;
    for (int64_t i = 0; i < m; i++) buf[i] = p[i * stride];
    return buf;
  }
  const uint16_t* h = v.ptr<uint16_t>() + off;
  const bool fp16 = v.dtype == F16;
  if (stride == 1) {
    const ew::IsaTable& t = ew::isa();
    (fp16 ? t.f16_to_f32 : t.bf16_to_f32)(h, buf, m);
  } else {
    for (int64_t i = 0; i < m; i++) buf[i] = fp16 ? f16_to_f32(h[i * stride]) : bf16_to_f32(h[i * stride]);
  }
  return buf;
}

// Where a chunk of a contiguous output is computed: in place for float32, else in buf.
float* out_run(const View& v, int64_t off, float* buf) { return v.dtype == F32 ? v.ptr<float>() + off : buf; }

// Rounds a half output's chunk from buf (computed by out_run) into v at off; float32 is already there.
void finish_run(const View& v, int64_t off, int64_t m, const float* buf) {
  if (v.dtype == F32) return;
  const ew::IsaTable& t = ew::isa();
  (v.dtype == F16 ? t.f32_to_f16 : t.f32_to_bf16)(buf, v.ptr<uint16_t>() + off, m);
}

}  // namespace

void glu_span(int act, const float* gate, const float* up, float* out, int64_t n) { glu_isa().forward[act](gate, up, out, n); }

// out = act(gate) * up
KESTREL_KERNEL(glu) {
  const char* k = "glu";
  int act = act_code(k, args.i64());
  View gate = args.view(), up = args.view(), out = args.view();
  args.done();
  need_float(k, "gate", gate);
  need_float(k, "up", up);
  need_float(k, "out", out);
  require_same_shape(k, gate, "gate", up, "up");
  require_same_shape(k, gate, "gate", out, "out");
  require_contiguous(k, out, "out");
  const View* vs[3] = {&out, &gate, &up};
  Strided<3> s = make_strided(vs);
  const int64_t sg = s.inner_stride(1), su = s.inner_stride(2);
  auto fn = glu_isa().forward[act];
  parallel_run(s.numel, kGrainGlu, [&](int64_t begin, int64_t end) {
    alignas(64) float bg[kChunk], bu[kChunk], bo[kChunk];
    walk(s, begin, end, [&](const int64_t* off, int64_t n) {
      for (int64_t i = 0; i < n; i += kChunk) {
        int64_t m = std::min(kChunk, n - i);
        float* o = out_run(out, off[0] + i, bo);
        fn(run_of(gate, off[1] + i * sg, sg, m, bg), run_of(up, off[2] + i * su, su, m, bu), o, m);
        finish_run(out, off[0] + i, m, o);
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
  need_float(k, "gate", gate);
  need_float(k, "up", up);
  need_float(k, "dy", dy);
  require_same_shape(k, gate, "gate", up, "up");
  require_same_shape(k, gate, "gate", dy, "dy");
  auto need_out = [&](bool has, const View& v, const char* name) {
    if (!has) return;
    need_float(k, name, v);
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
    alignas(64) float bg[kChunk], bu[kChunk], bd[kChunk], bdg[kChunk], bdu[kChunk];
    walk(s, begin, end, [&](const int64_t* off, int64_t n) {
      for (int64_t i = 0; i < n; i += kChunk) {
        int64_t m = std::min(kChunk, n - i), at = off[0] + i;
        float* dg = has_dg ? out_run(dgate, at, bdg) : nullptr;
        float* du = has_du ? out_run(dup, at, bdu) : nullptr;
        fn(run_of(gate, off[1] + i * sg, sg, m, bg), run_of(up, off[2] + i * su, su, m, bu),
           run_of(dy, off[3] + i * sd, sd, m, bd), dg, du, m);
        if (dg) finish_run(dgate, at, m, dg);
        if (du) finish_run(dup, at, m, du);
      }
    });
  });
}

}  // namespace kestrel
