#!/usr/bin/env bash
# compare.sh runs the side-by-side comparison in one go: routekit and pkoukk/tiktoken-go (Go,
# scripts/tokenizer/compare) and the official HF tokenizers under Node (bench.mjs), one thread
# each, on the same documents. Needs the fixtures and tokenizers@0.23.2 on NODE_PATH:
#   d=$(mktemp -d) && (cd "$d" && npm install --no-audit --no-fund tokenizers@0.23.2)
#   NODE_PATH=$d/node_modules scripts/tokenizer/compare.sh [reps]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
reps=${1:-5}
"$root/scripts/tokenizer/fetch-fixtures.sh" >/dev/null
(cd "$root/scripts/tokenizer/compare" && GOMAXPROCS=1 go run . -root "$root" -reps "$reps")
RAYON_NUM_THREADS=1 node "$root/scripts/tokenizer/bench.mjs" "$reps"
