// A tiny BERT embedder folder written from scratch for the tests: a word-level vocab.txt (BERT's
// WordPiece tokenizer, whole words only), a random 1-layer BERT as model.safetensors, and the
// synthetic retrieval facts (country -> capital) whose queries share no content word with their passage.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k from '../../src/index.js';
import { buildModel } from '../../src/models/registry.js';

export const COUNTRIES = ['france', 'italy', 'spain', 'germany', 'norway', 'sweden', 'poland', 'greece', 'egypt', 'japan', 'china', 'india', 'peru', 'chile', 'cuba', 'kenya'];
export const CAPITALS = ['paris', 'rome', 'madrid', 'berlin', 'oslo', 'stockholm', 'warsaw', 'athens', 'cairo', 'tokyo', 'beijing', 'delhi', 'lima', 'santiago', 'havana', 'nairobi'];
const WORDS = ['what', 'is', 'the', 'capital', 'of', 'which', 'city', 'a', 'an', 'old', 'large', 'town', 'name', 'seat', 'government', 'in', 'where', 'has', 'its', 'main'];
const SPECIAL = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];

/** Training query templates, a held-out template (trained words in a new order) for each fact, and the passages. */
export const TRAIN_QUERIES = [
  (country: string): string => `what is the capital of ${country}`,
  (country: string): string => `${country} capital city`,
  (country: string): string => `the main city of ${country}`,
];
export const TRAIN_QUERY = TRAIN_QUERIES[0];
export const HELDOUT_QUERY = (country: string): string => `which is the main capital city of ${country}`;
export const PASSAGE = (city: string): string => `${city} is a large old city`;

/** Writes the word-level vocab.txt (BERT's WordPiece over whole words) into dir; returns its size. */
export function writeWordVocab(dir: string): number {
  const vocab = [...SPECIAL, ...WORDS, ...COUNTRIES, ...CAPITALS];
  writeFileSync(join(dir, 'vocab.txt'), vocab.join('\n') + '\n');
  return vocab.length;
}

/** A folder with vocab.txt and a random BERT (hidden 32, 1 layer unless given) the loader reads. */
export function tinyBertFolder(prefix: string, opts: { layers?: number; hidden?: number; seed?: number } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const vocabSize = writeWordVocab(dir);
  const hidden = opts.hidden ?? 32;
  const config = {
    model_type: 'bert', architectures: ['BertModel'], vocab_size: vocabSize, hidden_size: hidden, num_hidden_layers: opts.layers ?? 1,
    num_attention_heads: 2, intermediate_size: 2 * hidden, max_position_embeddings: 32, type_vocab_size: 2, pad_token_id: 0, hidden_act: 'gelu', layer_norm_eps: 1e-12,
  };
  k.manualSeed(opts.seed ?? 0);
  const model = buildModel(config, join(dir, 'config.json'));
  k.savePretrained(dir, { model, hfConfig: config });
  model.dispose();
  return dir;
}
