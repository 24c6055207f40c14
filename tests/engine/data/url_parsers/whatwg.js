// WHATWG URL as Node implements it (the parser of browsers, fetch and undici).
// stdin: one URL per line, base64 of its UTF-8. stdout: one JSON array per line, the
// [parser, scheme, host] readings: the URL alone, and relative to an http page.
'use strict';
const readline = require('readline');

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', (line) => {
  const text = Buffer.from(line, 'base64').toString('utf8');
  const out = [];
  for (const [parser, base] of [['whatwg', undefined], ['whatwg-relative', 'http://page.example/']]) {
    try {
      const url = base === undefined ? new URL(text) : new URL(text, base);
      out.push([parser, url.protocol.slice(0, -1), url.hostname]);
    } catch (e) {
      // not a URL to this parser: it reaches nothing
    }
  }
  process.stdout.write(JSON.stringify(out) + '\n');
});
