// bench.mjs times the official HF tokenizers (npm tokenizers@0.23.2, the Rust library as a
// native Node addon) on the same documents as scripts/tokenizer/compare (the >= 200-byte prose
// and code chunks of the golden corpus), per-call encode and encodeBatch, and prints the same
// columns: family, implementation, MB/s (wall), MB per CPU-second of the process (all threads,
// so the native pool is counted), tokens, FNV-1a 64 of all IDs.
//
// Usage (repository root): RAYON_NUM_THREADS=1 NODE_PATH=<dir>/node_modules node scripts/tokenizer/bench.mjs [reps]
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Tokenizer } = require('tokenizers');
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const reps = Number(process.argv[2] || 5);
const all = JSON.parse(zlib.gunzipSync(fs.readFileSync(path.join(root, 'tokenizer/testdata/golden/corpus.json.gz'))));
const docs = all.filter((s) => Buffer.byteLength(s) >= 200);
const total = docs.reduce((a, s) => a + Buffer.byteLength(s), 0);
console.log(`# ${docs.length} documents, ${total} bytes, RAYON_NUM_THREADS=${process.env.RAYON_NUM_THREADS || 'unset'}, best of ${reps} passes`);

function fnv(idLists) {
  let h = 0xcbf29ce484222325n;
  const p = 0x100000001b3n;
  const mask = (1n << 64n) - 1n;
  let n = 0;
  for (const ids of idLists) {
    for (const id of ids) {
      for (const b of [id & 255, (id >>> 8) & 255, (id >>> 16) & 255, (id >>> 24) & 255]) {
        h ^= BigInt(b);
        h = (h * p) & mask;
      }
      n++;
    }
  }
  return [n, h.toString(16).padStart(16, '0')];
}

const line = (fam, impl, mbps, cpu, n, h) => console.log(`${fam.padEnd(12)} ${impl.padEnd(22)} ${mbps.toFixed(2).padStart(8)} ${cpu.toFixed(2).padStart(8)} ${String(n).padStart(9)} ${h}`);
const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };

for (const fam of ['llama3', 'qwen3', 'deepseek-v3', 'gpt-oss', 'gpt-4o', 'gpt-3.5', 'mistral-7b', 'gemma3']) {
  const file = path.join(root, '.cache/tokenizer', fam, 'tokenizer.json');
  if (!fs.existsSync(file)) { console.log(`${fam} skipped: no fixture`); continue; }
  let t0 = performance.now();
  const tok = Tokenizer.fromFile(file);
  const load = performance.now() - t0;
  const first = [];
  for (const d of docs) first.push(Array.from((await tok.encode(d, null, { addSpecialTokens: false })).getIds()));
  const [n, h] = fnv(first);
  let best = Infinity;
  let bestCPU = Infinity;
  for (let r = 0; r < reps; r++) {
    t0 = performance.now();
    const c0 = cpuMs();
    for (const d of docs) (await tok.encode(d, null, { addSpecialTokens: false })).getIds();
    best = Math.min(best, performance.now() - t0);
    bestCPU = Math.min(bestCPU, cpuMs() - c0);
  }
  line(fam, 'hf-tokenizers encode', total / best / 1e3, total / bestCPU / 1e3, n, h);
  best = Infinity;
  bestCPU = Infinity;
  for (let r = 0; r < reps; r++) {
    t0 = performance.now();
    const c0 = cpuMs();
    const encs = await tok.encodeBatch(docs, { addSpecialTokens: false });
    for (const e of encs) e.getIds();
    best = Math.min(best, performance.now() - t0);
    bestCPU = Math.min(bestCPU, cpuMs() - c0);
  }
  // The batch line hashes the batch's own output (untimed), so equal hashes show it agrees.
  const [bn, bh] = fnv((await tok.encodeBatch(docs, { addSpecialTokens: false })).map((e) => Array.from(e.getIds())));
  line(fam, 'hf-tokenizers batch', total / best / 1e3, total / bestCPU / 1e3, bn, bh);
  console.log(`${fam.padEnd(12)} ${'hf-tokenizers'.padEnd(22)} load ${load.toFixed(0)} ms`);
}
