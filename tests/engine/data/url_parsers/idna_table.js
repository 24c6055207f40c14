// Every code point that Node's IDNA (UTS 46, via ICU) maps to ASCII or to nothing, as a JSON
// object {code point: ASCII}: the label "a<c>b" is looked up and "a...b" kept when ASCII.
'use strict';
const url = require('url');

const table = {};
for (let cp = 0x80; cp <= 0x10ffff; cp++) {
  if (cp >= 0xd800 && cp <= 0xdfff) continue;
  const ascii = url.domainToASCII('a' + String.fromCodePoint(cp) + 'b');
  if (ascii !== '' && !ascii.includes('xn--')) table[cp] = ascii.slice(1, -1);
}
process.stdout.write(JSON.stringify(table));
