// Reduction runs per ISA (see ew_isa.h): row sums in vector accumulators (float32 widened to
// double), max/min keeping the first NaN, and column accumulation for outer-dim reductions.
// Included by the ew_<isa>.cc files inside their namespace, after ew_binary_impl.h.

// Sum of floats in double: vector accumulators, widened half a register at a time.
static void sum_row_f32(const void* xp, int64_t n, void* accp) {
  const float* x = static_cast<const float*>(xp);
  vd a0 = {}, a1 = {}, a2 = {}, a3 = {};
  int64_t i = 0;
  for (; i + 2 * WF <= n; i += 2 * WF) {
    a0 += __builtin_convertvector(vload<vfh>(x + i), vd);
    a1 += __builtin_convertvector(vload<vfh>(x + i + WF / 2), vd);
    a2 += __builtin_convertvector(vload<vfh>(x + i + WF), vd);
    a3 += __builtin_convertvector(vload<vfh>(x + i + 3 * WF / 2), vd);
  }
  vd t = (a0 + a1) + (a2 + a3);
  double s = 0;
  for (int k = 0; k < WD; k++) s += t[k];
  for (; i < n; i++) s += x[i];
  *static_cast<double*>(accp) += s;
}

static void sum_row_f64(const void* xp, int64_t n, void* accp) {
  const double* x = static_cast<const double*>(xp);
  vd a0 = {}, a1 = {}, a2 = {}, a3 = {};
  int64_t i = 0;
  for (; i + 4 * WD <= n; i += 4 * WD) {
    a0 += vload<vd>(x + i);
    a1 += vload<vd>(x + i + WD);
    a2 += vload<vd>(x + i + 2 * WD);
    a3 += vload<vd>(x + i + 3 * WD);
  }
  vd t = (a0 + a1) + (a2 + a3);
  double s = 0;
  for (int k = 0; k < WD; k++) s += t[k];
  for (; i < n; i++) s += x[i];
  *static_cast<double*>(accp) += s;
}

static void sum_row_i64(const void* xp, int64_t n, void* accp) {
  const uint64_t* x = static_cast<const uint64_t*>(xp);
  uint64_t s = 0;
  for (int64_t i = 0; i < n; i++) s += x[i];
  *static_cast<uint64_t*>(accp) += s;
}

// max/min keeping the first NaN: acc = (x beats acc || x is NaN) ? x : acc.
template <class T, bool Max>
static inline T pick(T acc, T x) {
  return ((Max ? x > acc : x < acc) || x != x) ? x : acc;
}


template <class T, bool Max>
static void ext_row(const void* xp, int64_t n, void* accp) {
  using VT = typename VecOf<T>::V;
  constexpr int W = KESTREL_VBYTES / sizeof(T);
  const T* x = static_cast<const T*>(xp);
  T* acc = static_cast<T*>(accp);
  int64_t i = 0;
  if (n >= 4 * W) {
    // pick in the lanes of four registers, as compare and blend (pick's scalar || kept one branchy
    // compare per element: argmax of 49152 logits took 86 us); a NaN lane stays NaN
    VT a[4];
    for (int r = 0; r < 4; r++) a[r] = vload<VT>(x + r * W);
    for (i = 4 * W; i + 4 * W <= n; i += 4 * W)
      for (int r = 0; r < 4; r++) {
        const VT u = vload<VT>(x + i + r * W);
        a[r] = ((Max ? u > a[r] : u < a[r]) | (u != u)) ? u : a[r];
      }
    for (int r = 0; r < 4; r++)
      for (int k = 0; k < W; k++) *acc = pick<T, Max>(*acc, a[r][k]);
  }
  for (; i < n; i++) *acc = pick<T, Max>(*acc, x[i]);
}

template <class T, class A>
static void sum_cols(const void* xp, int64_t n, void* accp) {
  const T* x = static_cast<const T*>(xp);
  A* acc = static_cast<A*>(accp);
  for (int64_t j = 0; j < n; j++) acc[j] = A(acc[j] + A(x[j]));
}

template <class T, bool Max>
static void ext_cols(const void* xp, int64_t n, void* accp) {
  const T* x = static_cast<const T*>(xp);
  T* acc = static_cast<T*>(accp);
  for (int64_t j = 0; j < n; j++) acc[j] = pick<T, Max>(acc[j], x[j]);
}

template <class T>
static void fill_extremes(ReduceFn (&row)[kNumReduce], ReduceFn (&cols)[kNumReduce]) {
  row[MAX] = ext_row<T, true>;
  row[MIN] = ext_row<T, false>;
  cols[MAX] = ext_cols<T, true>;
  cols[MIN] = ext_cols<T, false>;
}
