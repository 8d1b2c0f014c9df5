// copy: dst[...] = src[...] between strided views, with the CPU backend's cast rules
// (native/cast.h). Same dtype moves bytes; float32 <-> bfloat16/float16 convert directly (the hot
// casts of mixed precision); every other pair goes through double, integers to integers wrap.
#include "common.cuh"

using namespace kst;

template <class T> KFN void move_impl(const T* src, const Strided& ss, T* dst, const Strided& ds, i64 n) {
  KST_FOR(i, n) dst[offset_of(ds, i)] = src[offset_of(ss, i)];
}

struct B1 { u8 b; };
struct B2 { u16 b; };
struct B4 { u32 b; };
struct B8 { u64 b; };

KERNEL(move_b1, (const B1* src, Strided ss, B1* dst, Strided ds, i64 n)) { move_impl(src, ss, dst, ds, n); }
KERNEL(move_b2, (const B2* src, Strided ss, B2* dst, Strided ds, i64 n)) { move_impl(src, ss, dst, ds, n); }
KERNEL(move_b4, (const B4* src, Strided ss, B4* dst, Strided ds, i64 n)) { move_impl(src, ss, dst, ds, n); }
KERNEL(move_b8, (const B8* src, Strided ss, B8* dst, Strided ds, i64 n)) { move_impl(src, ss, dst, ds, n); }

template <class S, class D> KFN void float_cast_impl(const S* src, const Strided& ss, D* dst, const Strided& ds, i64 n) {
  KST_FOR(i, n) dst[offset_of(ds, i)] = from_float<D>(to_float(src[offset_of(ss, i)]));
}

KERNEL(cast_f32_bf16, (const float* src, Strided ss, bf16* dst, Strided ds, i64 n)) { float_cast_impl(src, ss, dst, ds, n); }
KERNEL(cast_bf16_f32, (const bf16* src, Strided ss, float* dst, Strided ds, i64 n)) { float_cast_impl(src, ss, dst, ds, n); }
KERNEL(cast_f32_f16, (const float* src, Strided ss, f16* dst, Strided ds, i64 n)) { float_cast_impl(src, ss, dst, ds, n); }
KERNEL(cast_f16_f32, (const f16* src, Strided ss, float* dst, Strided ds, i64 n)) { float_cast_impl(src, ss, dst, ds, n); }

// Dtype codes of src/backend/cpu/native.ts (DTYPE_CODE).
enum { F32 = 0, F64 = 1, F16 = 2, BF16 = 3, I32 = 4, I64 = 5, I8 = 6, U8 = 7, BOOL = 8 };

KFN bool is_int(int dt) { return dt >= I32; }

// One element as double (floats) or as a wrapped 64-bit integer (integers and bool).
struct Elem {
  double d;
  i64 i;
};

KFN Elem load_elem(const char* p, int dt, i64 off) {
  Elem e;
  e.d = 0;
  e.i = 0;
  switch (dt) {
    case F32: e.d = ((const float*)p)[off]; break;
    case F64: e.d = ((const double*)p)[off]; break;
    case F16: e.d = f16_to_f32(((const u16*)p)[off]); break;
    case BF16: e.d = bf16_to_f32(((const u16*)p)[off]); break;
    case I32: e.i = ((const i32*)p)[off]; e.d = double(e.i); break;
    case I64: e.i = ((const i64*)p)[off]; e.d = double(e.i); break;
    case I8: e.i = ((const i8*)p)[off]; e.d = double(e.i); break;
    default: e.i = ((const u8*)p)[off]; e.d = double(e.i); break;  // U8, BOOL
  }
  return e;
}

KFN void store_elem(char* p, int dt, i64 off, Elem e, bool src_int) {
  switch (dt) {
    case F32: ((float*)p)[off] = float(e.d); break;
    case F64: ((double*)p)[off] = e.d; break;
    case F16: ((u16*)p)[off] = f32_to_f16(float(e.d)); break;
    case BF16: ((u16*)p)[off] = f32_to_bf16(float(e.d)); break;
    case I32: ((i32*)p)[off] = src_int ? i32(e.i) : from_double<i32>(e.d); break;
    case I64: ((i64*)p)[off] = src_int ? e.i : from_double<i64>(e.d); break;
    case I8: ((i8*)p)[off] = src_int ? i8(e.i) : from_double<i8>(e.d); break;
    case U8: ((u8*)p)[off] = src_int ? u8(e.i) : from_double<u8>(e.d); break;
    default: ((u8*)p)[off] = src_int ? u8(e.i != 0) : u8(e.d != 0); break;  // BOOL
  }
}

KERNEL(cast_any, (const char* src, i32 sdt, Strided ss, char* dst, i32 ddt, Strided ds, i64 n)) {
  bool src_int = is_int(sdt);
  KST_FOR(i, n) store_elem(dst, ddt, offset_of(ds, i), load_elem(src, sdt, offset_of(ss, i)), src_int);
}
