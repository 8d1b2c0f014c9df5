#!/usr/bin/env bash
# Packs what bench/gpu/run.sh needs on a GPU machine that has no Node.js into .gpu/ (git-ignore
# it): this machine's node binary, the runtime node_modules (tsx, esbuild, the dependencies) and
# the fixtures of ../shared that the GPU tests read. Build the addon here first (npm ci); carry
# .gpu/ and build/Release beside the checkout, then on the GPU machine:
#   bash bench/gpu/unpack.sh && PATH=/tmp/kestrel-bin:$PATH bash bench/gpu/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .gpu
xz -T0 -6 -c "$(command -v node)" > .gpu/node.xz
tar -cJf .gpu/nm.tar.xz node_modules/@esbuild node_modules/@huggingface node_modules/esbuild node_modules/hyparquet \
  node_modules/tsx node_modules/yaml node_modules/.bin/tsx node_modules/.bin/esbuild
(cd .. && tar -cJf "$OLDPWD/.gpu/shared.tar.xz" shared/fixtures/models shared/fixtures/tokenizers shared/fixtures/lora \
  shared/fixtures/README.md shared/fixtures/SHA256SUMS)
du -sh .gpu/* build/Release/kestrel.node
