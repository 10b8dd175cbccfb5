/**
 * The benchmark harness still runs end to end (`npm run bench` is not part of CI: it takes
 * minutes). A short run of two scenarios: every target answers, the table and the JSON come
 * out, nothing failed. No timing is asserted: figures belong to bench/, not to tests (and the
 * other test files running alongside make them meaningless here anyway).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '..');

interface BenchRun {
  readonly scenario: string;
  readonly target: string;
  readonly ok: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly value: number;
  readonly failed?: string;
  readonly cpuPerOp?: { readonly per: string; readonly pathUs: number };
}

test('node bench/run.js runs a short get-c1 and ws-echo round: direct and tunnel rows, a JSON report, no errors', () => {
  const r = spawnSync(process.execPath, ['bench/run.js', '--only', 'get-c1,ws-echo', '--no-nginx', '--duration', '0.5', '--warmup', '0.2'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 90_000,
  });
  expect({ status: r.status, stderr: r.status === 0 ? '' : r.stderr.slice(-2000) }).toEqual({ status: 0, stderr: '' });
  expect(r.stdout).toMatch(/^GET small, 1 conn +tunnel +[\d,]+ +req\/s/m);
  expect(r.stdout).toMatch(/^WS echo 32 B, 1 conn +tunnel +[\d,]+ +msg\/s/m);
  const jsonPath = /^JSON: (.+)$/m.exec(r.stdout)?.[1];
  expect(jsonPath).toBeDefined();
  const file = join(ROOT, jsonPath as string);
  try {
    const report = JSON.parse(readFileSync(file, 'utf8')) as { results: BenchRun[]; problems: string[]; setupDetails: { relayNodeFlags: string[] } };
    // Warnings that the machine was busy are expected here (the other test files run alongside); nothing else.
    expect(report.problems.filter((p) => !/^(machine busy before start|other processes used up to)/.test(p))).toEqual([]);
    expect(report.setupDetails.relayNodeFlags).toEqual(['--min-semi-space-size=16']);
    const rows = report.results.map((e) => `${e.scenario}/${e.target}`).sort();
    expect(rows).toEqual(['get-c1/direct', 'get-c1/tunnel', 'ws-echo/direct', 'ws-echo/tunnel']);
    for (const e of report.results) {
      expect(e.failed).toBeUndefined();
      expect(e.ok).toBeGreaterThan(0);
      expect(e.non2xx + e.errors).toBe(0);
      expect(e.value).toBeGreaterThan(0);
    }
    const tunnel = report.results.find((e) => e.scenario === 'get-c1' && e.target === 'tunnel');
    expect(tunnel?.cpuPerOp?.per).toBe('req');
    expect(tunnel?.cpuPerOp?.pathUs).toBeGreaterThan(0);
  } finally {
    rmSync(file, { force: true });
  }
}, 120_000);
