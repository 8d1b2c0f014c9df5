// Public surface of src/data: readers (JSONL, JSON, Parquet, folders), record formats, packing and
// padding, and loadDataset's seeded, resumable train/eval datasets with an on-disk token cache.
export { DataError, BadLines, whereString, type Where } from './errors.js';
export { listDataFiles, readRecords, readJsonl, readJson, fileKind, type DataRecord, type FileKind, type ReadOptions } from './readers.js';
export { readLines, DEFAULT_MAX_RECORD_BYTES, type Line } from './lines.js';
export { readParquet } from './parquet.js';
export { IGNORE_INDEX, type Example, checkTokenIds } from './example.js';
export { encodeChat, encodeLossSpans, chatMessages, sharegptMessages, commonPrefix, type Codec, type PrefixSpan } from './chat.js';
export { FORMATS, type FormatName, detectFormat, makeEncoder, alpacaPrompt, type EncoderOptions, type RecordEncoder } from './formats.js';
export { type Row, type Batch, packExamples, packedRow, packedRowCount, padRow, collate } from './packing.js';
export { type TokenStore, TokenStoreBuilder, DocView } from './token_store.js';
export { SeededRandom, permutation } from './shuffle.js';
export { tokenizerIdentity, cacheKey, readCache, writeCache, type CacheMeta } from './cache.js';
export { Dataset, PackedDataset, PaddedDataset, type BatchOptions } from './dataset.js';
export { loadDataset, type LoadDatasetOptions, type DatasetStats, type LoadedData } from './load.js';
