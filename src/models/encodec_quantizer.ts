// EnCodec's residual vector quantiser (HF EncodecResidualVectorQuantizer): stage q picks, for each
// frame, the codebook entry nearest (Euclidean) to what the stages before it left unexplained, and
// decoding sums the chosen entries. Codebooks are stored as HF's EMA buffers (embed, embed_avg,
// cluster_size, inited); only `embed` is used.
import { add, mul, sub } from '../ops/elementwise.js';
import { embedding } from '../ops/indexing.js';
import { matmul } from '../ops/matmul.js';
import { argmax, sum } from '../ops/reduce.js';
import { permute, select, transpose } from '../ops/view.js';
import { shapeStr } from '../tensor/layout.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { type InitOpts, zerosInit } from '../nn/init.js';
import { Module } from '../nn/module.js';
import { stack } from '../ops/indexing.js';

class EuclideanCodebook extends Module {
  declare embed: Tensor;
  declare embed_avg: Tensor;
  declare cluster_size: Tensor;
  declare inited: Tensor;
  constructor(size: number, dim: number, init: InitOpts) {
    super();
    this.registerBuffer('inited', zerosInit([1], init));
    this.registerBuffer('cluster_size', zerosInit([size], init));
    this.registerBuffer('embed', zerosInit([size, dim], init));
    this.registerBuffer('embed_avg', zerosInit([size, dim], init));
  }
  /** x [N, D] -> nearest entry per row [N], by HF's score -(|x|^2 - 2 x.e + |e|^2) */
  encode(x: Tensor): Tensor {
    return tidy(() => {
      const xe = matmul(x, transpose(this.embed, 0, 1)); // [N, K]
      const score = sub(sub(mul(xe, 2), sum(mul(x, x), [1], true)), sum(mul(this.embed, this.embed), [1]));
      return argmax(score, 1);
    });
  }
  decode(codes: Tensor): Tensor {
    return embedding(codes, this.embed);
  }
}

class VectorQuantization extends Module {
  codebook: EuclideanCodebook;
  constructor(size: number, dim: number, init: InitOpts) {
    super();
    this.codebook = new EuclideanCodebook(size, dim, init);
  }
}

export class EncodecResidualVectorQuantizer extends Module {
  layers: VectorQuantization[];
  constructor(readonly numQuantizers: number, readonly codebookSize: number, readonly dim: number, init: InitOpts) {
    super();
    this.layers = Array.from({ length: numQuantizers }, () => new VectorQuantization(codebookSize, dim, init));
  }

  /** latent [1, D, frames] -> codes [nq, frames] (int64) */
  encode(latent: Tensor, nq: number): Tensor {
    if (latent.ndim !== 3 || latent.shape[0] !== 1 || latent.shape[1] !== this.dim)
      throw new Error(`encodec quantizer: latent ${shapeStr(latent.shape)} must be [1, ${this.dim}, frames]`);
    return tidy(() => {
      let residual = permute(select(latent, 0, 0), [1, 0]); // [frames, D]
      const codes: Tensor[] = [];
      for (const layer of this.layers.slice(0, nq)) {
        const c = layer.codebook.encode(residual);
        residual = sub(residual, layer.codebook.decode(c));
        codes.push(c);
      }
      return stack(codes, 0);
    });
  }

  /** codes [nq, frames] -> the summed code vectors [1, D, frames] */
  decode(codes: Tensor): Tensor {
    const nq = codes.shape[0];
    if (codes.ndim !== 2 || nq < 1 || nq > this.numQuantizers)
      throw new Error(`encodec quantizer: codes ${shapeStr(codes.shape)} must be [codebooks (1..${this.numQuantizers}), frames]`);
    return tidy(() => {
      let sumVec: Tensor | null = null;
      for (let q = 0; q < nq; q++) {
        const v = this.layers[q].codebook.decode(select(codes, 0, q)); // [frames, D]
        sumVec = sumVec ? add(sumVec, v) : v;
      }
      return permute(sumVec!, [1, 0]).unsqueeze(0);
    });
  }
}
