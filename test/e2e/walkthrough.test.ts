/**
 * docs/OPERATIONS.md's "three relays and Redis on one machine" walkthrough, run as written:
 * the ```sh walkthrough block is extracted and executed with sh, so the documented steps stay
 * true. It uses the fixed ports the document names (Redis 6390, relays 8081-8083, admin
 * 9191-9193, app 3000), all below the ephemeral range the other tests draw from.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '../..');

test('the OPERATIONS.md walkthrough reaches one tunnel through all three relays, survives a SIGKILL and a drain', async () => {
  const doc = readFileSync(join(ROOT, 'docs/OPERATIONS.md'), 'utf8');
  const m = /```sh walkthrough\n([\s\S]*?)```/.exec(doc);
  if (m === null) throw new Error('no ```sh walkthrough block in docs/OPERATIONS.md');
  const script = m[1] as string;
  const child = spawn('sh', ['-s'], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  child.stdin.end(script);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`walkthrough exited ${code}\n--- stdout\n${out}\n--- stderr\n${err}`);
  // Step 4: the app's page through each of the three relays, and the echo through relay-2.
  expect(out.match(/<h1>.*<\/h1>/g)?.length).toBeGreaterThanOrEqual(5);
  expect(out).toContain('through relay-2');
  expect(out).toMatch(/served again through relay-3 after \d+ ms/);
  expect(out).toContain('relay-2 /readyz while draining: 503');
}, 90_000);
