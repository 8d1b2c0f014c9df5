// Vite builds the Studio into ../dist/studio (served by `kestrel studio`); Preact's JSX runtime.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: './',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: { outDir: fileURLToPath(new URL('../dist/studio', import.meta.url)), emptyOutDir: true, chunkSizeWarningLimit: 1024 },
});
