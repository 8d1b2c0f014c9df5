// Sentence embeddings: models (backbone + pooling + Dense + Normalize) in sentence-transformers'
// layout, batched encoding, contrastive losses, GradCache, pair data, retrieval/STS evaluation.
export { pool, poolingModes, parsePooling, lastTokenIndex, POOLING_MODES, type PoolingMode, type PoolingSpec, type PoolOptions } from './pooling.js';
export { SentenceEmbedder, Dense, DEFAULT_SETTINGS, asBackbone, type Backbone, type EmbedderSettings, type TextBatch, type TextTokenizer } from './model.js';
export { loadEmbedder, saveEmbedder, moduleEntries, ST_LAYOUT_VERSION, type LoadEmbedderOptions } from './st_folder.js';
export { encode, type EncodeOptions } from './encode.js';
export { l2Normalize, cosineMatrix, pairwiseCosine, pairwiseEuclidean, pairwiseAngle } from './similarity.js';
export { mnrlLoss, tripletLoss, cosentLoss, angleLoss, contrastiveLoss, matryoshkaLoss, type MnrlOptions, type TripletOptions } from './losses.js';
export { gradCacheBackward, fullBatchBackward, type ColumnEmbedder, type ColumnsEmbedder } from './grad_cache.js';
export { embedColumns } from './columns.js';
export { readPairs, pairExample, PairDataset, type PairExample, type PairFormat, type PairData } from './pairs.js';
export {
  embeddingStep, evalMetrics, batchLoss, checkLossData, EmbeddingTrainee, LOSSES, LOSS_FORMAT, type LossName, type EmbedLossConfig, type EmbeddingStepOptions,
} from './objective.js';
export { evaluateRetrieval, evaluateSts, retrievalSetFromPairs, rankingMetrics, rankByScore, spearman, type RetrievalSet, type RetrievalOptions } from './evaluate.js';
export { trainEmbedder, type EmbedTrainOptions, type EvalRecord } from './train.js';
export { mineHardNegatives, type MineOptions } from './mine.js';
