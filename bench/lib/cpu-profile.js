/**
 * Reads a V8 .cpuprofile (node --cpu-prof) and lists where the time went: self time per
 * function (its own code, not what it calls), and the shares of idle (waiting in epoll),
 * garbage collection and native code outside JS.
 */
const fs = require('node:fs');
const path = require('node:path');

const SPECIAL = new Set(['(idle)', '(garbage collector)', '(program)', '(root)']);

function frameName(cf) {
  const file = cf.url ? cf.url.split('/').slice(-2).join('/') : '';
  return `${cf.functionName || '(anonymous)'}${file ? ` ${file}:${cf.lineNumber + 1}` : ''}`;
}

/** { totalMs, idleMs, gcMs, programMs, top: [{ name, selfMs, percentOfBusy }] } for one profile. */
function summarizeProfile(file, topN = 15) {
  const p = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i];
    selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  let totalUs = 0;
  const special = { '(idle)': 0, '(garbage collector)': 0, '(program)': 0 };
  const perFn = new Map();
  for (const [id, us] of selfUs) {
    totalUs += us;
    const cf = byId.get(id).callFrame;
    if (SPECIAL.has(cf.functionName)) {
      if (cf.functionName in special) special[cf.functionName] += us;
      continue;
    }
    const name = frameName(cf);
    perFn.set(name, (perFn.get(name) ?? 0) + us);
  }
  const busyUs = totalUs - special['(idle)'];
  const top = [...perFn]
    .sort((a, b) => b[1] - a[1])
    .slice(0, topN)
    .map(([name, us]) => ({ name, selfMs: Math.round(us / 100) / 10, percentOfBusy: busyUs > 0 ? Math.round((1000 * us) / busyUs) / 10 : 0 }));
  const ms = (us) => Math.round(us / 100) / 10;
  return { totalMs: ms(totalUs), idleMs: ms(special['(idle)']), gcMs: ms(special['(garbage collector)']), programMs: ms(special['(program)']), top };
}

/** Every .cpuprofile under dir (one subdirectory per process), summarized and keyed by process name. */
function summarizeProfileDir(dir, topN) {
  const out = {};
  if (!fs.existsSync(dir)) return out;
  for (const name of fs.readdirSync(dir).sort()) {
    const sub = path.join(dir, name);
    if (!fs.statSync(sub).isDirectory()) continue;
    for (const f of fs.readdirSync(sub).filter((x) => x.endsWith('.cpuprofile'))) {
      out[`${name}/${f}`] = summarizeProfile(path.join(sub, f), topN);
    }
  }
  return out;
}

module.exports = { summarizeProfile, summarizeProfileDir };
