// golden.mjs produces the golden token IDs for the tokenizer package's tests with the official
// Hugging Face tokenizers (npm "tokenizers", a native build of the Rust library).
//
// Usage (from the repository root; Node 20+):
//   scripts/tokenizer/fetch-fixtures.sh
//   d=$(mktemp -d) && (cd "$d" && npm install --no-audit --no-fund tokenizers@0.23.2)
//   NODE_PATH=$d/node_modules scripts/tokenizer/golden.sh
// golden.sh runs corpus.mjs, then this script as
//   node golden.mjs <corpus.json> <fixtures-dir> <out-dir>
// and gzips the results into tokenizer/testdata/golden/.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Tokenizer } = require('tokenizers');

const [corpusFile, fixDir, outDir] = process.argv.slice(2);
const corpus = JSON.parse(fs.readFileSync(corpusFile, 'utf8'));
const families = fs.readdirSync(fixDir).filter((f) => fs.existsSync(path.join(fixDir, f, 'tokenizer.json'))).sort();

let seed = 12345;
function rnd() {
  seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

for (const fam of families) {
  const file = path.join(fixDir, fam, 'tokenizer.json');
  const tok = Tokenizer.fromFile(file);
  const ids = [];
  const withSpecial = {};
  const decoded = {};
  const decodedSkip = {};
  for (let i = 0; i < corpus.length; i++) {
    const s = corpus[i];
    const enc = await tok.encode(s, null, { addSpecialTokens: false });
    const got = Array.from(enc.getIds());
    ids.push(got);
    if (i % 7 === 0) {
      const e2 = await tok.encode(s, null, { addSpecialTokens: true });
      withSpecial[i] = Array.from(e2.getIds());
    }
    const d = await tok.decode(got, false);
    if (d !== s) decoded[i] = d;
    if (i % 5 === 0) {
      const d2 = await tok.decode(got, true);
      if (d2 !== d) decodedSkip[i] = d2;
    }
  }
  // Decoding arbitrary ID sequences: partial UTF-8, byte-fallback runs, specials, unknown IDs.
  const vocab = tok.getVocabSize(true);
  const decodeCases = [];
  for (let k = 0; k < 300; k++) {
    const n = 1 + Math.floor(rnd() * 8);
    const seq = [];
    for (let j = 0; j < n; j++) {
      const r = rnd();
      if (r < 0.4) seq.push(Math.floor(rnd() * 300));
      else if (r < 0.95) seq.push(Math.floor(rnd() * vocab));
      else seq.push(vocab + Math.floor(rnd() * 10)); // out of range: skipped by HF
    }
    decodeCases.push({ ids: seq, text: await tok.decode(seq, false), skip: await tok.decode(seq, true) });
  }
  const out = { family: fam, vocab_size: vocab, ids, with_special: withSpecial, decoded, decoded_skip_special: decodedSkip, decode_cases: decodeCases };
  fs.writeFileSync(path.join(outDir, fam + '.json'), JSON.stringify(out));
  console.error(`${fam}: ${corpus.length} strings, ${ids.reduce((a, x) => a + x.length, 0)} ids, ${Object.keys(decoded).length} decode diffs`);
}
