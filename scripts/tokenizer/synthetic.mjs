// synthetic.mjs writes small hand-made tokenizer.json files that exercise the features the real
// fixtures do not use (lstrip/rstrip/single_word/normalized added tokens, Metaspace, Digits,
// merging split behaviours, regex fallbacks, continuing_subword_prefix, unk without fusing,
// NFKC/Lowercase/Strip, Roberta/Template post-processors, several decoders), then records what the
// official HF tokenizers (npm tokenizers@0.23.2) make of a list of strings with them.
//
// Usage: NODE_PATH=<dir with tokenizers@0.23.2>/node_modules node scripts/tokenizer/synthetic.mjs tokenizer/testdata/synthetic
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Tokenizer } = require('tokenizers');
const outDir = process.argv[2];
fs.mkdirSync(outDir, { recursive: true });

const byteChars = (() => {
  const bs = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n); n++; }
  const m = {};
  bs.forEach((b, i) => { m[b] = String.fromCodePoint(cs[i]); });
  return m;
})();

function vocabFrom(list) {
  const v = {};
  for (const t of list) if (!(t in v)) v[t] = Object.keys(v).length;
  return v;
}

const base = { version: '1.0', truncation: null, padding: null };

// A: WordPiece-like BPE (continuing_subword_prefix "##"), unk without fusing, heavy normalizer.
const letters = 'abcdefghijklmnopqrstuvwxyz0123456789'.split('');
const aVocab = vocabFrom(['[UNK]', '[CLS]', '[SEP]', ...letters, ...letters.map((c) => '##' + c),
  'th', 'he', '##he', 'the', 'an', 'nd', '##nd', 'and', 'in', 'ng', '##ng', 'ing', 'er', '##er', 'ca', 'cab', 'ab', '##ab']);
const A = {
  ...base,
  added_tokens: [
    { id: 0, content: '[UNK]', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    { id: 1, content: '[CLS]', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    { id: 2, content: '[SEP]', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    { id: 1000, content: '[X]', single_word: false, lstrip: true, rstrip: true, normalized: false, special: true },
    { id: 1001, content: 'cab', single_word: true, lstrip: false, rstrip: false, normalized: true, special: false },
    { id: 1002, content: 'Ǆ!', single_word: false, lstrip: false, rstrip: false, normalized: true, special: false },
    { id: 1003, content: '<<', single_word: false, lstrip: false, rstrip: true, normalized: false, special: false },
  ],
  normalizer: { type: 'Sequence', normalizers: [
    { type: 'NFKC' }, { type: 'Lowercase' },
    { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' },
    { type: 'Strip', strip_left: true, strip_right: true },
  ] },
  pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'WhitespaceSplit' }, { type: 'Digits', individual_digits: true }] },
  post_processor: { type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
    pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { '[CLS]': { id: '[CLS]', ids: [1], tokens: ['[CLS]'] }, '[SEP]': { id: '[SEP]', ids: [2], tokens: ['[SEP]'] } } },
  decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '##' }, content: '' }, { type: 'Fuse' }] },
  model: { type: 'BPE', dropout: null, unk_token: '[UNK]', continuing_subword_prefix: '##', end_of_word_suffix: null,
    fuse_unk: false, byte_fallback: false, vocab: aVocab,
    merges: ['t ##h', 'h ##e', '##h ##e', 't ##he', 'th ##e', 'a ##n', 'n ##d', 'an ##d', 'i ##n', 'n ##g', 'in ##g', 'e ##r', 'c ##a', 'ca ##b', 'a ##b'] },
};

// B: SentencePiece-like: Metaspace (prepend_scheme first), byte_fallback, fuse_unk, Roberta post.
const bBase = ['<unk>', '<s>', '</s>', '▁'];
for (let b = 0; b < 256; b++) bBase.push('<0x' + b.toString(16).toUpperCase().padStart(2, '0') + '>');
const bLetters = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,!?'.split('');
const bVocab = vocabFrom([...bBase, ...bLetters, '▁t', '▁th', '▁the', 'he', 'll', 'llo', '▁he', '▁hello', 'er', '▁w', 'or', '▁wor', '▁world', 'ld']);
const B = {
  ...base,
  added_tokens: [
    { id: 0, content: '<unk>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    { id: 1, content: '<s>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    { id: 2, content: '</s>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    { id: 400, content: '<mask>', single_word: false, lstrip: true, rstrip: false, normalized: false, special: true },
    { id: 401, content: 'world', single_word: true, lstrip: false, rstrip: false, normalized: false, special: false },
  ],
  normalizer: null,
  pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true },
  post_processor: { type: 'RobertaProcessing', sep: ['</s>', 2], cls: ['<s>', 1], trim_offsets: true, add_prefix_space: true },
  decoder: { type: 'Sequence', decoders: [{ type: 'ByteFallback' }, { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true }] },
  model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: true, byte_fallback: true, vocab: bVocab,
    merges: [['▁', 't'], ['▁t', 'h'], ['▁th', 'e'], ['h', 'e'], ['l', 'l'], ['ll', 'o'], ['▁', 'he'], ['▁he', 'llo'],
      ['e', 'r'], ['▁', 'w'], ['o', 'r'], ['▁w', 'or'], ['l', 'd'], ['▁wor', 'ld']] },
};

// C: byte-level with GPT-2 regex and prefix space, merging split behaviours and regex fallbacks.
const cList = [];
for (let b = 0; b < 256; b++) cList.push(byteChars[b]);
const G = byteChars[32];
cList.push(G + 't', G + 'th', G + 'the', 'he', 'in', 'ing', G + 'a', 'an', 'and', G + 'and', '12', '123', G + G);
const cVocab = vocabFrom(cList);
const C = {
  ...base,
  added_tokens: [
    { id: 300, content: '<|end|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    { id: 301, content: ' and', single_word: false, lstrip: false, rstrip: false, normalized: true, special: false },
  ],
  normalizer: { type: 'Prepend', prepend: '>' },
  pre_tokenizer: { type: 'Sequence', pretokenizers: [
    { type: 'Split', pattern: { String: '-' }, behavior: 'MergedWithNext', invert: false },
    { type: 'Split', pattern: { String: ',' }, behavior: 'MergedWithPrevious', invert: false },
    { type: 'Split', pattern: { Regex: '[0-9]' }, behavior: 'Contiguous', invert: false },
    { type: 'Split', pattern: { Regex: 'x+(?=y)' }, behavior: 'Removed', invert: false },
    { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
  ] },
  post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
  decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
  model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab: cVocab,
    merges: [G + ' t', G + 't h', G + 'th e', 'h e', 'i n', 'in g', G + ' a', 'a n', 'an d', G + 'a nd', '1 2', '12 3', G + ' ' + G].map((m) => m) },
};
// "Ġa nd" is not a valid merge (nd is not a token): use a valid one instead.
C.model.merges[9] = G + ' and';

const tokenizers = { a: A, b: B, c: C };
const strings = [
  '', ' ', 'hello world', 'Hello World', 'the thing and the other', 'THE CAB', 'a cab', 'acab', 'cab', 'cabs', 'the cab.',
  '[X]', 'a [X] b', 'a   [X]   b', '[X][X]', ' [X]x', 'ǅ! ǆ! Ǆ!', '<<  x', 'x<<y', '<< <<', 'ﬁne ①②', 'Ⅻ x²',
  'ΣΑΣ ΌΣΟΣ', 'İstanbul', 'tab\there', 'new\nline  two', '  lead and trail  ', '1234 56', 'x1y22z333',
  'hello', ' hello', 'hello  world', '<s>hello</s>', 'a<mask>b', 'a   <mask> b', '<mask>', 'world', 'helloworld',
  'the world', 'world!', '😀 é ß', 'Zürich', 'hello\u00a0world', '▁hello', '▁▁x',
  'a-b-c', '--x--', 'a,b,,c', ',x,', 'x1-2,3', 'xxy', 'axxxyb', 'xx', 'and and', 'hand and', '<|end|>and',
  'a and<|end|> and', ' the', 'the-and,then 123', '12 123 1234', 'in ing thing', "it's I'll", 'a\r\n b',
];
const golden = {};
for (const [name, tj] of Object.entries(tokenizers)) {
  const file = path.join(outDir, name + '.json');
  fs.writeFileSync(file, JSON.stringify(tj, null, 1));
  const tok = Tokenizer.fromFile(file);
  const cases = [];
  for (const s of strings) {
    const e = await tok.encode(s, null, { addSpecialTokens: false });
    const e2 = await tok.encode(s, null, { addSpecialTokens: true });
    const ids = Array.from(e.getIds());
    cases.push({ text: s, ids, with_special: Array.from(e2.getIds()), decoded: await tok.decode(ids, false), decoded_skip: await tok.decode(Array.from(e2.getIds()), true) });
  }
  golden[name] = { vocab_size: tok.getVocabSize(true), cases };
}
fs.writeFileSync(path.join(outDir, 'golden.json'), JSON.stringify(golden, null, 1));
console.error('wrote', Object.keys(golden).join(', '));
