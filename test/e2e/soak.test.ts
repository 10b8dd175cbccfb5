/**
 * The soak (bench/soak.ts) in its short CI mode: 20 s, 6 tunnels on two relay processes joined
 * through a real redis-server, every fault kind injected. The soak runs as its own process and
 * writes its report as JSON; this test reads it: no unexpected failure, every operation kind and
 * every fault kind seen, every relay quiet afterwards, a memory curve recorded. (Whether memory
 * levels off cannot be judged in 20 s; `npm run soak` judges it on 10 minutes.)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FAULT_KINDS, OP_KINDS } from '../../bench/soak/ledger';
import type { SoakReport } from '../../bench/soak/report';
import { cleanup, cleanups } from '../kit';

const ROOT = join(__dirname, '../..');

afterEach(cleanup);

/** `node --import tsx bench/soak.ts <args>` (one process: a signal reaches the soak itself, which stops what it started). */
function runSoak(args: readonly string[]): { child: ChildProcess; output: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/soak.ts'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (c: Buffer) => {
    output += c.toString('utf8');
  });
  child.stderr?.on('data', (c: Buffer) => {
    output += c.toString('utf8');
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  cleanups.push(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exit;
    clearTimeout(timer);
  });
  return { child, output: () => output, exit };
}

test('20 s soak: mixed traffic through 6 tunnels and 2 relays with cut, reset, stall, slow and Redis restarts; no unexpected failure, relays quiet afterwards', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'burrow-soak-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const jsonPath = join(dir, 'soak.json');
  const started = Date.now();
  const run = runSoak(['--duration', '20s', '--tunnels', '6', '--concurrency', '8', '--json', jsonPath]);
  const code = await run.exit;
  const wallMs = Date.now() - started;
  let report: SoakReport;
  try {
    report = JSON.parse(readFileSync(jsonPath, 'utf8')) as SoakReport;
  } catch {
    throw new Error(`the soak wrote no report (exit ${code}):\n${run.output()}`);
  }
  const context = `seed ${report.options.seed}; ${report.reasons.join('; ')}\n${run.output().slice(-6000)}`;
  // Zero failures outside the injected faults, and no agent dropped outside them.
  expect({ unexpected: report.unexpected.first, offline: report.reconnects.unexplained, context }).toEqual({ unexpected: [], offline: [], context });
  expect(report.unexpected.count).toBe(0);
  expect({ problems: report.problems, context }).toEqual({ problems: [], context });
  // Every kind of operation ran and succeeded, and every kind of fault was injected.
  for (const k of OP_KINDS) {
    expect(report.operations.byKind[k].total).toBeGreaterThan(0);
    expect(report.operations.byKind[k].ok).toBeGreaterThan(0);
  }
  for (const k of FAULT_KINDS) expect({ fault: k, injected: report.faults.byKind[k] > 0 }).toEqual({ fault: k, injected: true });
  // The faults did something: agents went offline and came back, and some operations failed in their windows.
  expect(report.reconnects.reconnections).toBeGreaterThan(0);
  expect(report.operations.total.expected).toBeGreaterThan(0);
  expect(report.operations.total.expected + report.operations.total.unexpected).toBe(report.operations.total.failed);
  // After the traffic: no stream left open, every agent registered once, no socket left behind.
  expect(report.endState.ok).toBe(true);
  for (const [name, relay] of Object.entries(report.relays)) {
    expect({ name, ...relay.endState }).toMatchObject({
      name,
      streamsIngress: 0,
      streamsAgent: 0,
      pendingSessions: 0,
      sessions: relay.endState?.expectedSessions,
    });
    // The memory curve: a sample before, during and after the traffic, after a forced GC each.
    const phases = new Set(relay.samples.map((s) => s.phase));
    expect([...phases].sort()).toEqual(['after', 'before', 'traffic']);
    expect(relay.samples.length).toBeGreaterThanOrEqual(10);
    for (const s of relay.samples) expect(s.live).toBeGreaterThan(0);
    expect(relay.verdict.judged).toBe(false);
  }
  expect(Object.keys(report.relays).sort()).toEqual(['a', 'b']);
  expect(report.passed).toBe(true);
  expect(code).toBe(0);
  // The printed report carries the same figures.
  expect(run.output()).toContain('unexpected failures: 0');
  expect(run.output()).toMatch(/relay a memory[\s\S]*start\/peak\/end: rss [\d.]+\/[\d.]+\/[\d.]+/);
  // Setup, 20 s of traffic, the final checks: the CI mode stays short.
  expect(wallMs).toBeLessThan(45_000);
}, 90_000);
