// llama.cpp's "llama" architecture rotates adjacent pairs (x[2i], x[2i+1]) (GPT-J style), while HF
// Llama rotates the two halves (x[i], x[i + hd/2]) (rotate_half). convert_hf_to_gguf.py therefore
// reorders the rows of q_proj and k_proj within each head: HF row  h*hd + j*hd/2 + i  becomes GGUF
// row  h*hd + 2i + j  (reshape(H, 2, hd/2, ...).swapaxes(1, 2)). Families that llama.cpp runs
// with NeoX-style RoPE (qwen2, phi3, gemma, gemma2) keep HF's rows.

/** Rows [H*hd, cols] in HF order -> GGUF's interleaved order (or back with `inverse`). */
export function permuteRopeRows(x: Float32Array, rows: number, heads: number, opts: { inverse?: boolean } = {}): Float32Array {
  if (rows % heads !== 0 || (rows / heads) % 2 !== 0 || x.length % rows !== 0)
    throw new Error(`permuteRopeRows: ${rows} rows do not split into ${heads} heads of an even size (${x.length} values)`);
  const cols = x.length / rows, hd = rows / heads, half = hd / 2;
  const out = new Float32Array(x.length);
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < half; i++)
      for (let j = 0; j < 2; j++) {
        const hf = h * hd + j * half + i, gg = h * hd + 2 * i + j;
        const [from, to] = opts.inverse ? [gg, hf] : [hf, gg];
        out.set(x.subarray(from * cols, (from + 1) * cols), to * cols);
      }
  return out;
}

/** A [rows, cols] row-major matrix transposed to [cols, rows]. */
export function transpose2d(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = x[r * cols + c];
  return out;
}
