// corpus.mjs writes the golden-test corpus (a JSON array of strings) to stdout. Deterministic:
// a seeded PRNG, fixed source files (public-domain prose from golang.org/x/text testdata, Go
// source and licence text from GOROOT, BSD) and hand-written fragments. Special-token literals
// are sampled from the fixture files in .cache/tokenizer so every family sees its own tokens.
//
// Usage: node scripts/tokenizer/corpus.mjs <fixtures-dir> <GOROOT> <x/text module dir> > corpus.json
import fs from 'node:fs';
import path from 'node:path';

const [fixDir, goroot, xtext] = process.argv.slice(2);
if (!fixDir || !goroot || !xtext) {
  console.error('usage: corpus.mjs <fixtures-dir> <GOROOT> <x/text dir>');
  process.exit(2);
}

let seed = 0x9e3779b9;
function rnd() { // mulberry32
  seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const ri = (n) => Math.floor(rnd() * n);
const pick = (a) => a[ri(a.length)];

const out = [];
const seen = new Set();
const add = (s) => { if (!seen.has(s)) { seen.add(s); out.push(s); } };

// 1. Prose and code chunks cut at line boundaries (200..1600 bytes).
function chunks(file, n) {
  const text = fs.readFileSync(file, 'utf8').replace(/^\uFEFF/, '');
  const lines = text.split(/(?<=\n)/);
  let i = 0;
  for (let k = 0; k < n && i < lines.length; k++) {
    const want = 200 + ri(1400);
    let s = '';
    while (i < lines.length && Buffer.byteLength(s) < want) s += lines[i++];
    if (s) add(s);
    i += ri(20);
  }
}
const xt = (f) => path.join(xtext, 'encoding/testdata', f);
chunks(xt('candide-utf-8.txt'), 40);
chunks(xt('rashomon-utf-8.txt'), 25);
chunks(xt('sunzi-bingfa-simplified-utf-8.txt'), 25);
chunks(xt('sunzi-bingfa-traditional-utf-8.txt'), 10);
chunks(xt('unsu-joh-eun-nal-utf-8.txt'), 25);
chunks(path.join(goroot, 'LICENSE'), 3);
for (const f of ['src/net/http/server.go', 'src/strings/strings.go', 'src/fmt/print.go',
  'src/encoding/json/decode.go', 'src/sort/sort.go', 'src/regexp/syntax/parse.go',
  'src/runtime/map.go', 'src/go/ast/ast.go', 'src/text/template/exec.go']) {
  const p = path.join(goroot, f);
  if (fs.existsSync(p)) chunks(p, 14);
}

// 2. Hand-written sentences in several scripts.
const sentences = [
  'The quick brown fox jumps over the lazy dog. It\'s 3:45pm and we\'ve got 1,234,567 reasons.',
  'Routing requests by prefix only works when the token IDs are exactly the same as the server\'s.',
  'Le cœur a ses raisons que la raison ne connaît point. Ça va très bien, merci !',
  'Die Größe der Straße überrascht Jürgen; er fährt 120 km/h auf der Autobahn.',
  'El niño comió paella en la playa; ¿quién pagó la cuenta? ¡Nadie!',
  'Съешь же ещё этих мягких французских булок, да выпей чаю.',
  'Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Η γλώσσα μου έδωσαν ελληνική.',
  'اللغة العربية جميلة جداً، وهي لغة القرآن الكريم. الرقم ١٢٣٤٥ مكتوب بالأرقام الهندية.',
  'مرحبا بالعالم! كيف حالك اليوم؟ أنا بخير، شكراً.',
  'हिन्दी भारत की राजभाषा है। मैं आज बाज़ार जा रहा हूँ। संख्या १२३४५६७८९०।',
  'नमस्ते दुनिया! यह एक परीक्षण वाक्य है जिसमें क्षत्रिय और ज्ञान जैसे संयुक्ताक्षर हैं।',
  'עברית היא שפה שמית. שלום עולם!',
  'ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ สวัสดีครับ',
  'Tiếng Việt có nhiều dấu: ắ ằ ẳ ẵ ặ, người Việt Nam.',
  'İstanbul\'da ılık bir gün; ŞİŞLİ, ışık, Iğdır.',
  '日本語のテキストを正しく分割できるかどうか試します。カタカナとひらがな、漢字が混ざっています。',
  '中文分词测试：我爱北京天安门，天安门上太阳升。１２３４５６７８９０',
  '한국어 문장입니다. 띄어쓰기가 있는 언어입니다.',
  'ქართული ენა, Հայերեն լեզու, ᠮᠣᠩᠭᠣᠯ, ትግርኛ, ᏣᎳᎩ',
  'Emoji: 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷🇯🇵 ❤️‍🔥 🧑🏿‍💻 1️⃣ #️⃣ 🤖🤖🤖',
  'Math: ∀x∈ℝ, x²≥0; ∑ᵢ₌₁ⁿ i = n(n+1)/2; √2 ≈ 1.41421356237; ½ ⅓ ¼ Ⅻ ⑳',
];
for (const s of sentences) add(s);

// 3. Fragment pools for adversarial strings.
const ws = [' ', '  ', '   ', '\t', '\n', '\r\n', '\r', '\n\n', '\v', '\f', '\u0085', '\u00a0', '\u1680',
  '\u2000', '\u2003', '\u2009', '\u200a', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000', '\u200b',
  '\ufeff', ' \n', '\n ', ' \t\n', '\t\t', '    ', '\n\n\n'];
const letters = ['hello', 'World', 'THE', 'a', 'I', 'x', 'don', 'CamelCase', 'snake_case', 'ſ', 'Straße',
  'café', 'cafe\u0301', 'naïve', 'Ǆ', 'ǅ', 'ǆ', 'ß', 'İ', 'ı', 'ﬁ', 'Ａｂｃ', 'Ⅷ', 'ǅungla', 'ʰʲ', 'ˈaɪ',
  'Привет', 'мир', 'Ωμέγα', 'שלום', 'مرحبا', 'नमस्ते', 'क्षि', 'ภาษา', '日本', 'の', 'カタカナ', 'ｶﾀｶﾅ',
  '中文', '鿿', '龥', '一', '〇', '한국', 'ㄱ', 'a\u0300\u0301', '\u0301', 'e\u20dd', 'Z\u0351\u036b',
  'ꙮ', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', '𝐀𝐁𝐂', 'ᚠᚢᚦ', '𐌰𐌱', 'ǰ', 'ﷺ', 'ﬀ'];
const contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'M", "'LL",
  "'D", "'ſ", "'ẞ", "’s", "'x", "'", "''", "'ll've"];
const digits = ['0', '1', '12', '123', '1234', '12345', '123456', '1234567890', '3.14159', '1,000,000',
  '٠١٢٣٤', '۱۲۳', '१२३४', '০১২', '๑๒๓', '１２３', '²³', '½', '⅞', 'Ⅻ', '①②③', '𝟙𝟚𝟛', '0x1F', '1e-9',
  '2024-01-31', '-42', '+7', '99.9%'];
const punct = ['.', ',', '!', '?', '...', '—', '–', '-', '(', ')', '[', ']', '{', '}', '<', '>', '/', '\\',
  '"', '“', '”', '«', '»', '„', '@', '#', '$', '%', '^', '&', '*', '_', '=', '+', '|', '~', '`', ';', ':',
  '::', '->', '=>', '!=', '==', '//', '/*', '*/', '<!--', '-->', '&&', '||', '¿', '¡', '§', '¶', '•', '…',
  '©', '®', '™', '€', '£', '¥', '₹', '°', '±', '×', '÷', '∞', '≠', '←', '→', '↑', '✓', '✗', '★', '♥',
  '。', '、', '「', '」', '（', '）', '！', '？', '：', '；', '【', '】', '《', '》', '·', '،', '؛', '؟', '।', '॥'];
const emoji = ['😀', '👍', '👍🏽', '👨‍👩‍👧‍👦', '👩‍💻', '🏳️‍🌈', '🇺🇸', '🇯🇵', '❤️', '❤️‍🔥', '🤖', '🧑🏿‍🚀',
  '1️⃣', '#️⃣', '©️', '🫠', '🪿', '✨', '🔥🔥', '😂😂😂', '👁️‍🗨️', '🐈‍⬛'];
const odd = ['\u0000', '\u0001', '\u001b[31m', '\u007f', '\u0080', '\u009f', '\u00ad', '\u034f', '\u061c',
  '\u180e', '\u200c', '\u200d', '\u200e', '\u200f', '\u202a', '\u202e', '\u2060', '\u2066', '\ufe0f',
  '\ufff9', '\ufffc', '\ufffd', '\uffff', '\ufdd0', '\ue000', '\uf8ff', '\u{10ffff}', '\u{e0001}',
  '\u{e0041}', '\u{1d173}', '\u{f0000}', '\u0378', '\u{40000}', '\u{e01ef}', 'Ā̈', '\u0e33', 'ำ', '\u17b4',
  'ⅰ', '\u2163', '\u3007', '\u{1f1e6}', '\u{1f3fb}', 'ǈ', 'ᾈ', 'ﬃ', 'ｱ', 'ﾞ', '\u1100\u1161\u11a8', '각',
  '\u0041\u030a', '\u00c5', '\u212b', '\u2126', '\u212a'];
const code = ['func main() {', '}', 'if err != nil {\n\treturn err\n}', 'x := []int{1, 2, 3}',
  'for i := 0; i < n; i++ {', '#include <stdio.h>', 'def f(x):\n    return x**2', 'SELECT * FROM t;',
  '<div class="a">', '</div>', '{"key": "value", "n": 12}', 'console.log(`${a}`);', '    ', '\t\t',
  'a->b', 'std::vector<int>', '$HOME/.config', 'https://example.com/path?q=1&r=2', 'C:\\Windows\\',
  '@@ -1,3 +1,4 @@', '// TODO(x): fix', '/* c */', 'x=1;y=2', '0xDEADBEEF', 'fn(&mut self)', '...args'];

// Special-token literals and their near misses, sampled from every fixture.
const specials = new Set(['<s>', '</s>', '<unk>', '<bos>', '<eos>', '<pad>', '<|endoftext|>',
  '<|im_start|>', '<|im_end|>', '<|begin_of_text|>', '<|eot_id|>', '<|start_header_id|>',
  '<|end_header_id|>', '<think>', '</think>', '<|start|>', '<|message|>', '<|channel|>', '<|end|>',
  '<|return|>', '<start_of_turn>', '<end_of_turn>', '<｜begin▁of▁sentence｜>', '<｜User｜>', '<0x0A>',
  '<|im_start', '<|', '|>', 'im_start|>', '< s>', '<S>', '<<s>>', '<s><s>', '</s></s>', '<|endoftext|>x']);
for (const fam of fs.readdirSync(fixDir).sort()) {
  const f = path.join(fixDir, fam, 'tokenizer.json');
  if (!fs.existsSync(f)) continue;
  const at = JSON.parse(fs.readFileSync(f, 'utf8')).added_tokens;
  const normal = at.filter((t) => !t.content.startsWith('<unused') && !t.content.startsWith('<|reserved'));
  for (const t of normal.slice(0, 120)) specials.add(t.content);
  for (let k = 0; k < 25; k++) specials.add(pick(at).content);
}
const specialList = [...specials].sort();

const pools = [ws, ws, letters, letters, letters, contractions, digits, punct, emoji, odd, code, specialList];

// 4. Systematic edge cases.
add('');
for (const w of ws) { add(w); add('a' + w + 'b'); add(w + 'x'); add('x' + w); add(w + w + 'y'); }
for (const c of contractions) { add(c); add('it' + c); add('IT' + c + ' go'); add(' ' + c); add(c + c); }
for (const d of digits) { add(d); add('x' + d + 'y'); add(' ' + d); }
for (let n = 1; n <= 24; n++) { add('7'.repeat(n)); add('a' + '9'.repeat(n)); add('٣'.repeat(n)); }
for (const s of specialList) { add(s); add('x' + s + 'y'); add(' ' + s + ' '); add(s + '\n' + s); add('a' + s + s + 'b'); }
for (const e of emoji) { add(e); add(e + e); add('a ' + e + ' b'); }
for (const o of odd) { add(o); add('a' + o + 'b'); add(o + o + o); }
for (const s of ['  \n  \n', 'x\n\t\ny', 'a   b', 'a \n b', '\n\n\n\nx', 'x   ', '   x', '\r\n\r\n', ' \r\n ',
  "I'm sure THEY'LL say 12345 ü café 日本語のテキスト 🤖", 'Hello, world!', 'hello world', ' Hello', 'Hello ',
  "'ſx", "'Sx", 'x\u00a0\u00a0y', '\u3000\u3000x', 'x\u2028y', 'Ａ１２３', '$$$$', '....', '----',
  '\u00a0x', '\tfoo', '(hello', '  (x', ' !!', '!!\n\n', '.\r\n', 'a/b/c', '//\n', ' /\n/']) add(s);

// Very long words and runs.
add('a'.repeat(3000));
add('supercalifragilisticexpialidocious'.repeat(60));
add('9'.repeat(2500));
add(' '.repeat(2000) + 'x');
add('\n'.repeat(1000));
add('ab '.repeat(800));
add('日本語'.repeat(500));
add('😀'.repeat(400));
add('Ǆ'.repeat(700));
add('ꙮ'.repeat(300) + 'x');
add('\t'.repeat(500) + '}');
add('▁'.repeat(300) + 'x');
add('<s>'.repeat(200));
add('https://example.com/' + 'abcdefghij'.repeat(200));

// 5. Random mixes until the corpus has at least 4,000 strings.
while (out.length < 4200) {
  const n = 1 + ri(12);
  let s = '';
  for (let k = 0; k < n; k++) s += pick(pick(pools));
  add(s);
}

process.stdout.write(JSON.stringify(out));
console.error(`corpus: ${out.length} strings, ${out.reduce((a, s) => a + Buffer.byteLength(s), 0)} bytes`);
