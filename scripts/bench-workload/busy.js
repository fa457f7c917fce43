// A busy Node.js program for the real-program benchmarks (scripts/bench-real): JIT-compiled
// JavaScript, named through the perf map node writes with --perf-basic-prof, and native code
// inside node's own binary (the JSON parser, the RegExp engine, OpenSSL's SHA-256).
// Usage: node --perf-basic-prof busy.js SECONDS
'use strict';
const crypto = require('crypto');

function fib(n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

function jsonRoundTrip(i) {
  const record = { id: i, name: 'item-' + i, tags: ['a', 'b', 'c'], payload: 'x'.repeat(200) };
  return JSON.parse(JSON.stringify(record)).id;
}

function sha256(i) {
  return crypto.createHash('sha256').update('payload-' + i).digest()[0];
}

function matchAll(i) {
  const text = `${i}-alpha ${i + 1}-beta ${i + 2}-gamma`;
  let n = 0;
  for (const m of text.matchAll(/(\d+)-(\w+)/g)) n += m[2].length;
  return n;
}

const seconds = Number(process.argv[2] || 30);
const end = Date.now() + seconds * 1000;
let acc = 0;
for (let i = 0; ; i++) {
  acc += fib(15) + jsonRoundTrip(i) + sha256(i) + matchAll(i);
  if (i % 256 === 0 && Date.now() > end) break;
}
console.log(acc);
