// The per-ISA table (ew_isa.h IsaTable) of the spans defined by the other ew_*_impl.h files.
// Included last by the ew_<isa>.cc files inside their namespace.

static IsaTable build_table(const char* name) {
  IsaTable t = {};
  t.name = name;
#define SET_F(CODE, NAME)                  \
  t.unary[S_F32][CODE] = f32_##NAME;       \
  t.unary[S_F64][CODE] = f64_##NAME;       \
  t.unary_grad[0][CODE] = f32g_##NAME;     \
  t.unary_grad[1][CODE] = f64g_##NAME;
  SET_F(NEG, neg) SET_F(EXP, exp) SET_F(LOG, log) SET_F(SQRT, sqrt) SET_F(RSQRT, rsqrt) SET_F(ABS, abs)
  SET_F(TANH, tanh) SET_F(SIGMOID, sigmoid) SET_F(RELU, relu) SET_F(SILU, silu) SET_F(GELU_TANH, gelu_tanh)
  SET_F(GELU_ERF, gelu_erf) SET_F(SIN, sin) SET_F(COS, cos) SET_F(FLOOR, floor) SET_F(SIGN, sign)
  SET_F(RECIPROCAL, reciprocal) SET_F(POW_SCALAR, pow_scalar) SET_F(CLAMP, clamp)
#undef SET_F
  t.unary[S_I32][NEG] = IntUnary<int32_t>::neg;
  t.unary[S_I32][ABS] = IntUnary<int32_t>::abs;
  t.unary[S_I32][SIGN] = IntUnary<int32_t>::sign;
  t.unary[S_I32][CLAMP] = IntUnary<int32_t>::clamp;
  t.unary[S_I64][NEG] = IntUnary<int64_t>::neg;
  t.unary[S_I64][ABS] = IntUnary<int64_t>::abs;
  t.unary[S_I64][SIGN] = IntUnary<int64_t>::sign;
  t.unary[S_I64][CLAMP] = IntUnary<int64_t>::clamp;
  fill_binary<float>(t.binary[S_F32]);
  fill_binary<double>(t.binary[S_F64]);
  fill_binary<int32_t>(t.binary[S_I32]);
  fill_binary<int64_t>(t.binary[S_I64]);
  t.reduce_row[S_F32][SUM] = sum_row_f32;
  t.reduce_row[S_F64][SUM] = sum_row_f64;
  t.reduce_row[S_I64][SUM] = sum_row_i64;
  t.reduce_cols[S_F32][SUM] = sum_cols<float, double>;
  t.reduce_cols[S_F64][SUM] = sum_cols<double, double>;
  t.reduce_cols[S_I64][SUM] = sum_cols<uint64_t, uint64_t>;
  fill_extremes<float>(t.reduce_row[S_F32], t.reduce_cols[S_F32]);
  fill_extremes<double>(t.reduce_row[S_F64], t.reduce_cols[S_F64]);
  fill_extremes<int32_t>(t.reduce_row[S_I32], t.reduce_cols[S_I32]);
  fill_extremes<int64_t>(t.reduce_row[S_I64], t.reduce_cols[S_I64]);
  t.f32_to_f16 = cvt_f32_f16;
  t.f16_to_f32 = cvt_f16_f32;
  t.f32_to_bf16 = cvt_f32_bf16;
  t.bf16_to_f32 = cvt_bf16_f32;
  t.transpose32 = transpose32;
  return t;
}
