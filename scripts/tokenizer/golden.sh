#!/usr/bin/env bash
# golden.sh regenerates tokenizer/testdata/golden/ (corpus + golden IDs per family) with the
# official HF tokenizers under Node. Needs the fixtures (fetch-fixtures.sh) and the npm package
# tokenizers@0.23.2 on NODE_PATH (installed outside the repository, see golden.mjs).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
fix=$root/.cache/tokenizer
out=$root/tokenizer/testdata/golden
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
node "$root/scripts/tokenizer/corpus.mjs" "$fix" "$(go env GOROOT)" "$(go env GOMODCACHE)/golang.org/x/text@v0.43.0" >"$tmp/corpus.json"
RAYON_NUM_THREADS=1 node "$root/scripts/tokenizer/golden.mjs" "$tmp/corpus.json" "$fix" "$tmp"
gzip -9n <"$tmp/corpus.json" >"$out/corpus.json.gz"
for f in "$tmp"/*.json; do
  [ "$(basename "$f")" = corpus.json ] && continue
  gzip -9n <"$f" >"$out/$(basename "$f").gz"
done
ls -l "$out"
