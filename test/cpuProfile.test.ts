import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

interface ProfileSummary {
  totalMs: number;
  idleMs: number;
  gcMs: number;
  programMs: number;
  top: { name: string; selfMs: number; percentOfBusy: number }[];
}
// The bench's profile reader (plain JS, used by `node bench/run.js --profile`).
const { summarizeProfile, summarizeProfileDir } = require('../bench/lib/cpu-profile') as {
  summarizeProfile: (file: string, topN?: number) => ProfileSummary;
  summarizeProfileDir: (dir: string, topN?: number) => Record<string, ProfileSummary>;
};

const frame = (functionName: string, url = '', lineNumber = -1) => ({ functionName, url, lineNumber, scriptId: '0', columnNumber: 0 });

/** A V8 profile: root -> idle, gc, hot (-> hotChild), cold. Samples: 1 ms each. */
function writeProfile(dir: string): string {
  const nodes = [
    { id: 1, callFrame: frame('(root)'), children: [2, 3, 4, 6] },
    { id: 2, callFrame: frame('(idle)') },
    { id: 3, callFrame: frame('(garbage collector)') },
    { id: 4, callFrame: frame('hot', 'file:///app/dist/hot.js', 9), children: [5] },
    { id: 5, callFrame: frame('hotChild', 'file:///app/dist/hot.js', 19) },
    { id: 6, callFrame: frame('', 'node:events', 0) },
  ];
  const samples = [...Array(50).fill(2), ...Array(10).fill(3), ...Array(25).fill(4), ...Array(10).fill(5), ...Array(5).fill(6)];
  const file = path.join(dir, 'CPU.test.cpuprofile');
  fs.writeFileSync(file, JSON.stringify({ nodes, startTime: 0, endTime: 100_000, samples, timeDeltas: samples.map(() => 1000) }));
  return file;
}

describe('bench CPU profile summary', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-prof-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('self time per function, idle and GC apart, shares of busy time', () => {
    const s = summarizeProfile(writeProfile(dir));
    expect([s.totalMs, s.idleMs, s.gcMs, s.programMs]).toEqual([100, 50, 10, 0]);
    // Busy = 50 ms: hot 25 (not its child's 10), hotChild 10, the anonymous events frame 5.
    expect(s.top).toEqual([
      { name: 'hot dist/hot.js:10', selfMs: 25, percentOfBusy: 50 },
      { name: 'hotChild dist/hot.js:20', selfMs: 10, percentOfBusy: 20 },
      { name: '(anonymous) node:events:1', selfMs: 5, percentOfBusy: 10 },
    ]);
    expect(summarizeProfile(path.join(dir, 'CPU.test.cpuprofile'), 1).top.map((f) => f.name)).toEqual(['hot dist/hot.js:10']);
  });

  test('a directory of per-process subdirectories is keyed by process', () => {
    const relayDir = path.join(dir, 'relay');
    fs.mkdirSync(relayDir);
    writeProfile(relayDir);
    fs.writeFileSync(path.join(dir, 'summary.json'), '{}');
    expect(Object.keys(summarizeProfileDir(dir))).toEqual(['relay/CPU.test.cpuprofile']);
    expect(summarizeProfileDir(path.join(dir, 'missing'))).toEqual({});
  });
});
