/**
 * infra/nginx-paths.conf for real: nginx (Debian's, or NGINX_BIN) in front of three in-process
 * relays under /r1, /r2 and /r3 of one server, an agent per relay dialling through nginx, and
 * visitors reaching each tunnel by path. The shipped file is used as written, but for TLS (plain
 * HTTP on a free loopback port instead), the upstream addresses and the files nginx writes (in a
 * temp dir). Also `nginx -t` on the file as shipped, with a throw-away certificate.
 * Skipped, saying so, when nginx is not installed.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket, { WebSocketServer } from 'ws';
import { selfSignedCert } from '../certs';
import { cleanup, cleanups, freePort, request, type StartedRelay, startApp, startRelay, startTunnel, waitFor } from '../kit';

const root = join(__dirname, '..', '..');
const shipped = readFileSync(join(root, 'infra/nginx-paths.conf'), 'utf8');

/** Absolute path of a command on PATH (or in the sbin directories), or undefined. */
function which(command: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' });
  const path = r.stdout.trim();
  if (r.status === 0 && path !== '') return path;
  return ['/usr/sbin', '/usr/local/sbin', '/sbin'].map((d) => join(d, command)).find((p) => existsSync(p));
}

const nginx = process.env.NGINX_BIN ?? which('nginx');
const openssl = which('openssl');
const SKIP_NGINX = nginx ? '' : ' (SKIPPED: nginx is not installed; apt-get install nginx, or set NGINX_BIN to its binary)';

/** The files nginx writes (pid, logs, temp dirs) moved into `dir`; one worker. */
function sandboxed(text: string, dir: string): string {
  const paths = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((p) => `${p}_temp_path ${join(dir, p)};`).join(' ');
  return text
    .replace(/^http\s*\{/m, `http {\n    ${paths} access_log ${join(dir, 'access.log')};`)
    .replace(/^worker_processes[^;]*;/m, `worker_processes 1;\npid ${join(dir, 'nginx.pid')};\nerror_log ${join(dir, 'error.log')};`);
}

/** The shipped file with plain HTTP on `port` instead of TLS, the redirect server on `redirectPort`, and the relays' real ports. */
function forTest(relayPorts: readonly number[], port: number, redirectPort: number, dir: string): string {
  let text = shipped
    .replace(/^\s*listen \[::\]:\d+( ssl)?;\n/gm, '')
    .replace(/^(\s*)listen 80;/m, `$1listen 127.0.0.1:${redirectPort};`)
    .replace(/^(\s*)listen 443 ssl;/m, `$1listen 127.0.0.1:${port};`)
    .replace(/^\s*ssl_[a-z_]+\s[^;]*;\n/gm, '');
  relayPorts.forEach((p, i) => {
    text = text.replace(new RegExp(`server 127\\.0\\.0\\.1:${8081 + i}\\b`), `server 127.0.0.1:${p}`);
  });
  return sandboxed(text, dir);
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Runs nginx in the foreground with `conf`; stopped (and the temp dir removed) at cleanup. */
async function startNginx(conf: string, dir: string, port: number): Promise<ChildProcess> {
  const confPath = join(dir, 'nginx.conf');
  writeFileSync(confPath, conf);
  const child = spawn(nginx as string, ['-p', dir, '-e', join(dir, 'error.log'), '-c', confPath, '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (c: Buffer) => {
    output += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    output += c.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      // Fast shutdown of the master, which stops its worker; SIGKILL if it lingers.
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  });
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`nginx exited ${child.exitCode}: ${output}${readLog(dir)}`);
      return tcpOpen(port);
    },
    10_000,
    'nginx to listen',
  );
  return child;
}

const readLog = (dir: string): string => {
  try {
    return readFileSync(join(dir, 'error.log'), 'utf8');
  } catch {
    return '';
  }
};

/** An app that names itself, echoes what it saw, and echoes WebSocket messages with its path. */
async function namedApp(name: string): Promise<number> {
  const { server, port } = await startApp((req, res) => {
    req.resume();
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ app: name, url: req.url, method: req.method }));
    });
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws, req) => ws.on('message', (data) => ws.send(`${name} ${req.url} ${data.toString()}`)));
  cleanups.push(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
  });
  return port;
}

function wsRoundTrip(url: string, message: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    cleanups.push(() => ws.terminate());
    ws.once('open', () => ws.send(message));
    ws.once('message', (data: Buffer) => {
      resolve(data.toString());
      ws.close();
    });
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode} ${res.headers['x-burrow-error'] ?? ''}`)));
  });
}

afterEach(cleanup);

describe('infra/nginx-paths.conf', () => {
  test('three relays under /r1/, /r2/, /r3/ with upgrade headers; r1 and r2 keep the prefix, r3 rewrites it to //x', () => {
    for (const n of [1, 2, 3]) expect(shipped).toMatch(new RegExp(`upstream burrow_r${n} \\{\\s*server 127\\.0\\.0\\.1:${8080 + n}\\b`));
    expect(shipped).toMatch(/location \/r1\/ \{\s*proxy_pass http:\/\/burrow_r1;\s*\}/);
    expect(shipped).toMatch(/location \/r2\/ \{\s*proxy_pass http:\/\/burrow_r2;\s*\}/);
    expect(shipped).toMatch(/location \/r3 \{\s*proxy_pass http:\/\/burrow_r3\/;\s*\}/);
    expect(shipped).toMatch(/proxy_set_header\s+Upgrade\s+\$http_upgrade;/);
    expect(shipped).toMatch(/proxy_set_header\s+Connection\s+\$connection_upgrade;/);
    expect(shipped).toMatch(/proxy_set_header\s+Host\s+\$host;/);
    expect(shipped).toMatch(/listen 443 ssl;/);
    // The relay command line it documents is a valid one.
    expect(shipped).toContain('--base-path /r1 --public-url https://example.org/r1');
  });

  const why = SKIP_NGINX || (openssl ? '' : ' (SKIPPED: openssl is not installed)');
  (why === '' ? test : test.skip)(`nginx -t accepts it as shipped, with a throw-away certificate${why}`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'burrow-nginx-paths-t-'));
    try {
      const { cert, key } = selfSignedCert(dir, 'example.org', openssl as string);
      const conf = sandboxed(
        shipped.replace(/ssl_certificate\s+\S+;/, `ssl_certificate ${cert};`).replace(/ssl_certificate_key\s+\S+;/, `ssl_certificate_key ${key};`),
        dir,
      );
      expect(conf).toContain(cert);
      writeFileSync(join(dir, 'nginx.conf'), conf);
      const r = spawnSync(nginx as string, ['-t', '-q', '-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf')], { encoding: 'utf8' });
      expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  (nginx ? test : test.skip)(`nginx runs it in front of three relays; agents dial through it, visitors reach each tunnel by path${SKIP_NGINX}`, async () => {
    const port = await freePort();
    const redirectPort = await freePort();
    const relays: StartedRelay[] = [];
    for (const n of [1, 2, 3]) {
      relays.push(
        await startRelay({
          domain: 'localhost',
          basePath: `/r${n}`,
          publicUrl: `http://localhost:${port}/r${n}`,
          pathRouting: true,
          tunnelUrls: 'path',
          // Agents dial nginx by its address; their signed audience names it.
          extraAudiences: [`127.0.0.1:${port}`],
          trustedProxies: ['127.0.0.1'],
        }),
      );
    }
    // What each relay is handed, before it takes its prefix off.
    const seen: string[][] = relays.map((r) => {
      const urls: string[] = [];
      r.relay.app.server.prependListener('request', (req) => urls.push(req.url ?? ''));
      return urls;
    });
    const dir = mkdtempSync(join(tmpdir(), 'burrow-nginx-paths-'));
    await startNginx(
      forTest(
        relays.map((r) => r.port),
        port,
        redirectPort,
        dir,
      ),
      dir,
      port,
    );
    const apex = `127.0.0.1:${port}`;

    const tunnels = [];
    for (const n of [1, 2, 3]) {
      const appPort = await namedApp(`app${n}`);
      const tunnel = await startTunnel(`http://127.0.0.1:${port}/r${n}`, appPort);
      expect(tunnel.url).toBe(`http://localhost:${port}/r${n}/t/${tunnel.label}/`);
      tunnels.push(tunnel);
    }
    // Each agent landed on its own relay, through its own prefix.
    for (const r of relays) expect(r.relay.stats().activeSessions).toBe(1);
    for (const n of [1, 2, 3]) {
      const health = await request(port, apex, { path: `/r${n}/healthz` });
      expect(JSON.parse(health.text)).toMatchObject({ status: 'ok', node: relays[n - 1]?.relay.nodeId });
    }

    for (const [i, tunnel] of tunnels.entries()) {
      const n = i + 1;
      const r = await request(port, apex, { path: `/r${n}/t/${tunnel.label}/x?y=1` });
      expect([r.status, r.text]).toEqual([200, JSON.stringify({ app: `app${n}`, url: '/x?y=1', method: 'GET' })]);
      const post = await request(port, apex, { method: 'POST', path: `/r${n}/t/${tunnel.label}/form`, body: 'a=1' });
      expect(JSON.parse(post.text)).toEqual({ app: `app${n}`, url: '/form', method: 'POST' });
      // Redirects name the public prefix, whichever way nginx passed it on.
      const bare = await request(port, apex, { path: `/r${n}/t/${tunnel.label}?q=1` });
      expect([bare.status, bare.headers.location]).toEqual([308, `/r${n}/t/${tunnel.label}/?q=1`]);
      expect(await wsRoundTrip(`ws://127.0.0.1:${port}/r${n}/t/${tunnel.label}/ws?k=v`, 'hi')).toBe(`app${n} /ws?k=v hi`);
    }

    // r1 and r2 got the prefix as sent, r3 got it rewritten to //.
    expect(seen[0]).toContain(`/r1/t/${tunnels[0]?.label}/x?y=1`);
    expect(seen[1]).toContain(`/r2/t/${tunnels[1]?.label}/x?y=1`);
    expect(seen[2]).toContain(`//t/${tunnels[2]?.label}/x?y=1`);

    // A tunnel lives on its own relay only: relay 2 does not know relay 1's label.
    const elsewhere = await request(port, apex, { path: `/r2/t/${tunnels[0]?.label}/x` });
    expect(elsewhere.status).toBe(404);
    // Outside the relays' prefixes is the rest of the site, not a relay.
    expect((await request(port, apex, { path: '/elsewhere' })).headers['x-burrow-error']).toBeUndefined();
  });
});
