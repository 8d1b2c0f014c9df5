// The model folders the Studio offers: every HF folder (a config.json) and every .gguf file directly
// under --models, described from its files (a GGUF file from its header) without loading weights. A client names a folder by its name only;
// modelFolderPath refuses anything that could leave --models ('..', separators, symlinks out).
import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { join, sep } from 'node:path';
import { readJson } from '../io/hf_folder.js';
import { SafetensorsFile } from '../io/safetensors.js';
import { GgufFile } from '../gguf/reader.js';
import { invalid, ApiError } from './errors.js';
import type { BrokenModelFolder, ModelFolderInfo } from './studio_types.js';
import { suggestParams } from './suggested_params.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * The folder `name` names under root; 400 for a name that is not one plain folder name, 404 when
 * it is no model folder there.
 * @example modelFolderPath('/models', 'tiny') // '/models/tiny'
 */
export function modelFolderPath(root: string, name: unknown): string {
  if (typeof name !== 'string' || !NAME.test(name) || name.includes('..')) {
    throw invalid(`'name' must be the name of a folder under --models (letters, digits, '.', '_', '-'; no '..' or '/'), got ${JSON.stringify(name)}`, 'name');
  }
  const dir = join(root, name);
  if (!existsSync(join(dir, 'config.json')) && !isGgufFile(dir)) throw new ApiError(404, `no model folder '${name}' under --models (it needs a config.json, or is a .gguf file)`, 'name', 'model_not_found');
  // a symlink inside --models must not lead outside it
  const realRoot = realpathSync(root);
  if (!realpathSync(dir).startsWith(realRoot + sep)) throw new ApiError(403, `model folder '${name}' resolves outside --models`, 'name', 'path_outside_models');
  return dir;
}

function weightFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.endsWith('.safetensors')).map((f) => join(dir, f));
}

function firstTensorDtype(files: string[]): string {
  if (!files.length) return 'unknown';
  const f = new SafetensorsFile(files[0]);
  try {
    return f.names.length ? f.info(f.names[0]).fileDtype.toLowerCase() : 'unknown';
  } finally {
    f.close();
  }
}

function contextLength(config: Record<string, unknown>): number | null {
  for (const key of ['max_position_embeddings', 'n_positions', 'n_ctx']) if (typeof config[key] === 'number') return config[key] as number;
  return null;
}

function templateSource(dir: string): ModelFolderInfo['templateSource'] {
  if (existsSync(join(dir, 'chat_template.jinja'))) return 'chat_template.jinja';
  const cfg = join(dir, 'tokenizer_config.json');
  return existsSync(cfg) && readJson(cfg).chat_template !== undefined ? 'tokenizer_config.json' : null;
}

const isGgufFile = (path: string): boolean => path.toLowerCase().endsWith('.gguf') && existsSync(path) && statSync(path).isFile();

/** A .gguf file described from its header: architecture, file type, context length, template. */
function describeGguf(root: string, name: string): ModelFolderInfo {
  const g = new GgufFile(join(root, name));
  try {
    const family = g.get('general.architecture', 'string');
    const types = [...new Set([...g.tensors.values()].filter((t) => t.shape.length > 1).map((t) => t.type.toLowerCase()))];
    const template = typeof g.metadata.get('tokenizer.chat_template') === 'string';
    return {
      name, family, sizeBytes: statSync(join(root, name)).size, dtype: `gguf ${types.join('+') || 'f32'}`,
      contextLength: g.get(`${family}.context_length`, 'number', 0) || null, templateSource: template ? 'tokenizer.chat_template' : null,
      suggested: suggestParams(family, {}, template),
    };
  } finally {
    g.close();
  }
}

/** Describes one folder or .gguf file; a broken one is reported with its error instead of failing the list. */
export function describeModelFolder(root: string, name: string): ModelFolderInfo | BrokenModelFolder {
  try {
    if (isGgufFile(join(root, name))) return describeGguf(root, name);
    const dir = join(root, name);
    const config = readJson(join(dir, 'config.json'));
    const files = weightFiles(dir);
    const source = templateSource(dir);
    const genFile = join(dir, 'generation_config.json');
    const family = typeof config.model_type === 'string' ? config.model_type : 'unknown';
    return {
      name, family,
      sizeBytes: files.reduce((s, f) => s + statSync(f).size, 0),
      dtype: typeof config.torch_dtype === 'string' ? config.torch_dtype : firstTensorDtype(files),
      contextLength: contextLength(config), templateSource: source,
      suggested: suggestParams(family, existsSync(genFile) ? readJson(genFile) : {}, source !== null),
    };
  } catch (e) {
    return { name, error: (e as Error).message };
  }
}

/** Every folder directly under root that holds a config.json and every .gguf file, sorted by name (symlinks that lead out of root left out). */
export function listModelFolders(root: string): (ModelFolderInfo | BrokenModelFolder)[] {
  const realRoot = realpathSync(root);
  return readdirSync(root, { withFileTypes: true })
    .filter((d) => NAME.test(d.name) && (((d.isDirectory() || d.isSymbolicLink()) && existsSync(join(root, d.name, 'config.json'))) || isGgufFile(join(root, d.name))))
    .filter((d) => realpathSync(join(root, d.name)).startsWith(realRoot + sep))
    .map((d) => d.name).sort().map((n) => describeModelFolder(root, n));
}
