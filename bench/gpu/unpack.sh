#!/usr/bin/env bash
# The other half of pack.sh, on the GPU machine: node into /tmp/kestrel-bin (decompressed with
# python3's lzma, which every CUDA/PyTorch image has), node_modules into the checkout, and the
# fixtures into ../shared.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p /tmp/kestrel-bin
python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('.gpu/node.xz'), open('/tmp/kestrel-bin/node', 'wb'))"
chmod +x /tmp/kestrel-bin/node
[ -d node_modules/tsx ] || python3 -c "import tarfile; tarfile.open('.gpu/nm.tar.xz').extractall('.')"
[ -d ../shared/fixtures/models ] || python3 -c "import tarfile; tarfile.open('.gpu/shared.tar.xz').extractall('..')"
/tmp/kestrel-bin/node --version
