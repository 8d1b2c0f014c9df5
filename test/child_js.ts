// How a test starts one of the test tree's own TypeScript files as a process (a rank script, a
// test file re-run under KESTREL_SIMD). Under scripts/test.mjs, which sets KESTREL_CHILD_FROM_DIST=1
// once it has checked that dist/ is built from src/ (as for the kestrel children: src/cli/self.ts),
// the file and the test modules it imports are transpiled to plain JS modules that import Kestrel
// from dist/, so the child starts without tsx's loader hooks; otherwise it runs through tsx.
// scripts/test.mjs runs the test files themselves from such modules too (transpiledFile).
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const OUT = join(ROOT, 'node_modules', '.cache', 'kestrel-test-js');
const SRC = join(ROOT, 'src');
const TEST = join(ROOT, 'test');

/** node's arguments that run a test-tree .ts file (its own arguments follow). */
export function childArgs(file: string): string[] {
  return process.env.KESTREL_CHILD_FROM_DIST === '1' ? [transpiled(resolve(file))] : ['--import', 'tsx', file];
}

/** The plain JS module of a test-tree .ts file (scripts/test.mjs runs the test files themselves so). */
export const transpiledFile = (file: string): string => transpiled(resolve(file));

const done = new Map<string, string>();
/** loaded at the first transpile: test/helpers.ts imports this file, and every child that imports it need not load TypeScript */
let ts: typeof import('typescript') | undefined;

/** The plain JS module for a test-tree .ts file, written under OUT where it differs from what is there; its test imports likewise. */
function transpiled(file: string): string {
  const known = done.get(file);
  if (known) return known;
  const out = join(OUT, relative(ROOT, file).replace(/\.ts$/, '.mjs'));
  done.set(file, out); // before the imports: a cycle ends here
  const source = readFileSync(file, 'utf8');
  ts ??= createRequire(import.meta.url)('typescript') as typeof import('typescript');
  // an inline source map whose root is the file's folder: stack traces and test locations name the .ts lines
  const options = { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, inlineSourceMap: true, inlineSources: true, sourceRoot: pathToFileURL(dirname(file)).href + '/' };
  const js = ts.transpileModule(source, { fileName: file, compilerOptions: options, transformers: { after: [relocate(ts, file)] } }).outputText;
  if (!existsSync(out) || readFileSync(out, 'utf8') !== js) {
    mkdirSync(dirname(out), { recursive: true });
    const tmp = `${out}.${process.pid}.tmp`; // two test files may write it at once: each renames a whole file
    writeFileSync(tmp, js);
    renameSync(tmp, out);
  }
  return out;
}

/**
 * Edits to the emitted syntax tree (after TypeScript's own, which drop type-only imports), so that
 * the module behaves as its .ts file did: every import.meta.url / dirname / filename becomes the .ts
 * file's, and every relative module specifier (import and export declarations, import() of a
 * literal) points where target() says. Text inside strings (code a test hands to a child) is left alone.
 */
function relocate(tsc: typeof import('typescript'), file: string): import('typescript').TransformerFactory<import('typescript').SourceFile> {
  const f = tsc.factory;
  const spec = (s: import('typescript').Expression | undefined): import('typescript').StringLiteral | undefined =>
    s && tsc.isStringLiteral(s) && /^\.\.?\//.test(s.text) ? f.createStringLiteral(target(resolve(dirname(file), s.text))) : undefined;
  const meta: Record<string, string> = { url: pathToFileURL(file).href, dirname: dirname(file), filename: file };
  return (ctx) => (root) => {
    const visit = (node: import('typescript').Node): import('typescript').Node => {
      if (tsc.isPropertyAccessExpression(node) && tsc.isMetaProperty(node.expression) && node.expression.keywordToken === tsc.SyntaxKind.ImportKeyword && Object.hasOwn(meta, node.name.text))
        return f.createStringLiteral(meta[node.name.text]);
      if (tsc.isImportDeclaration(node) && spec(node.moduleSpecifier))
        return f.updateImportDeclaration(node, node.modifiers, node.importClause, spec(node.moduleSpecifier)!, node.attributes);
      if (tsc.isExportDeclaration(node) && spec(node.moduleSpecifier))
        return f.updateExportDeclaration(node, node.modifiers, node.isTypeOnly, node.exportClause, spec(node.moduleSpecifier)!, node.attributes);
      if (tsc.isCallExpression(node) && node.expression.kind === tsc.SyntaxKind.ImportKeyword && spec(node.arguments[0]))
        return f.updateCallExpression(node, node.expression, node.typeArguments, [spec(node.arguments[0])!, ...node.arguments.slice(1)]);
      return tsc.visitEachChild(node, visit, ctx);
    };
    return tsc.visitNode(root, visit) as import('typescript').SourceFile;
  };
}

/** Where an import of `path` (resolved against the importing .ts file) goes: Kestrel's sources to dist/, test modules to their JS. */
function target(path: string): string {
  if (path.startsWith(SRC + '/') && path.endsWith('.js')) return pathToFileURL(join(ROOT, 'dist', relative(SRC, path))).href;
  const source = path.replace(/\.js$/, '.ts');
  if (path.startsWith(TEST + '/') && existsSync(source)) return pathToFileURL(transpiled(source)).href;
  return pathToFileURL(path).href;
}
