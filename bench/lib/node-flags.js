/**
 * The Node flags a script's shebang asks for (`#!/usr/bin/env -S node <flags>`), so the harness
 * starts the relay exactly as `burrow-relay` (and the Docker image) runs it.
 */
const fs = require('node:fs');

function shebangNodeFlags(script) {
  const first = fs.readFileSync(script, 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!\s*\/usr\/bin\/env\s+(?:-S\s+)?node((?:\s+--?[^\s]+)*)\s*$/.exec(first);
  if (m === null) return [];
  return (m[1] ?? '').trim().split(/\s+/).filter(Boolean);
}

module.exports = { shebangNodeFlags };
