/**
 * Private TCP shares (`burrow share tcp` + `burrow connect`): nothing public. A sharing agent
 * registers a share name, a connecting agent listens locally and opens one stream per connection;
 * the relay checks the proof (secret or same tenant) and splices the two streams. Byte-exact both
 * ways with half-close, refusals with clean closes and log lines on both sides, the allow-list,
 * two nodes on a real Redis, the connection cap, the name bound to its key, and the config file.
 * Real sockets on loopback throughout.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Agent, type ConnectionEvent, Connector, type OnlineEvent, parseTcpTarget } from '@burrow/agent';
import { RedisBus } from '@burrow/bus';
import { decodeReason, encodeConnectRequest, encodeFrame, FrameType, type KeyPair, shareSecretDigest } from '@burrow/protocol';
import { FileTenantStore } from '@burrow/relay';
import { cleanup, cleanups, freePort, newKey, RawAgent, startRelay, waitFor } from '../kit';
import { startRedis } from '../redis';
import { dial, freeRange, hashAll, loggedRelay, pump, readAll, startTcpServer } from '../tcpKit';

afterEach(cleanup);

const AGENT_BIN = join(__dirname, '..', '..', 'apps/agent/dist/bin.js');

const echo = (socket: Socket): void => {
  socket.pipe(socket);
};

interface ShareOptions {
  readonly name: string;
  readonly secret?: string;
  readonly allow?: readonly string[];
  readonly keyPair?: KeyPair;
  readonly token?: string;
}

/** A sharing agent, online; its connection events are kept. */
async function startShare(relay: string, target: number | string, o: ShareOptions) {
  const agent = new Agent({
    relay,
    target: parseTcpTarget(target),
    keyPair: o.keyPair ?? newKey(),
    share: {
      name: o.name,
      ...(o.secret !== undefined ? { secretSha256: shareSecretDigest(o.secret) } : {}),
      ...(o.allow !== undefined ? { allow: o.allow.map((a) => parseTcpTarget(a)) } : {}),
    },
    ...(o.token !== undefined ? { token: o.token } : {}),
  });
  const events: ConnectionEvent[] = [];
  agent.on('connection', (e) => events.push(e));
  cleanups.push(() => agent.close());
  const online = await new Promise<OnlineEvent>((resolve, reject) => {
    agent.once('online', resolve);
    agent.once('fatal', reject);
    agent.start();
  });
  return { agent, events, online };
}

/** A connecting agent listening on a free loopback port, online; its connection events are kept. */
async function startConnector(relay: string, share: string, o: { secret?: string; token?: string; target?: string } = {}) {
  const connector = new Connector({
    relay,
    keyPair: newKey(),
    share,
    listen: { host: '127.0.0.1', port: 0 },
    ...(o.secret !== undefined ? { secret: o.secret } : {}),
    ...(o.token !== undefined ? { token: o.token } : {}),
    ...(o.target !== undefined ? { target: o.target } : {}),
  });
  const events: ConnectionEvent[] = [];
  connector.on('connection', (e) => events.push(e));
  cleanups.push(() => connector.close());
  await new Promise<void>((resolve, reject) => {
    connector.once('online', () => resolve());
    connector.once('fatal', reject);
    connector.start();
  });
  return { connector, events, port: (connector.address() as { port: number }).port };
}

async function roundTrip(port: number, text = 'ping'): Promise<{ data: string; ended: string }> {
  const socket = await dial(port);
  const reply = readAll(socket);
  socket.end(text);
  const r = await reply;
  return { data: r.data.toString(), ended: r.ended };
}

const SECRET = 'correct-horse-battery-staple';

describe('share and connect', () => {
  test('10 MB each way at once, byte-exact (SHA-256 on both ends), and half-close both ways', async () => {
    const MB = 1024 * 1024;
    const serverBlock = randomBytes(MB + 8192);
    const clientBlock = randomBytes(MB + 8192);
    let serverSent: Promise<string> | undefined;
    let serverGot: Promise<{ hash: string; bytes: number }> | undefined;
    const localPort = await startTcpServer((socket) => {
      serverGot = hashAll(socket);
      serverSent = pump(socket, serverBlock, 64 * 1024, 160);
    });
    const relay = await startRelay();
    const share = await startShare(relay.url, localPort, { name: 'bulk', secret: SECRET });
    expect(share.online).toMatchObject({ share: 'bulk', label: 'share:bulk', url: '' });
    const { port } = await startConnector(relay.url, 'bulk', { secret: SECRET });
    const started = Date.now();
    const socket = await dial(port);
    const clientGot = hashAll(socket);
    const clientSent = await pump(socket, clientBlock, 64 * 1024, 160);
    const got = await clientGot;
    await waitFor(() => serverGot !== undefined, 1000, 'server side');
    const atServer = await (serverGot as Promise<{ hash: string; bytes: number }>);
    expect(atServer).toEqual({ hash: clientSent, bytes: 10 * MB });
    expect(got).toEqual({ hash: await (serverSent as Promise<string>), bytes: 10 * MB });
    process.stdout.write(`share: 2 × 10 MB in ${((Date.now() - started) / 1000).toFixed(2)} s\n`);
  });

  test('half-close: the client shuts down writing, the server answers in full after EOF; and the other way round', async () => {
    const answer = randomBytes(300_000);
    let serverGot = '';
    const afterEof = await startTcpServer((socket) => {
      socket.on('data', (c: Buffer) => {
        serverGot += c.toString();
      });
      socket.on('end', () => setTimeout(() => socket.end(answer), 50));
    });
    const upload = randomBytes(300_000);
    let uploaded: Promise<Buffer> | undefined;
    const closesFirst = await startTcpServer((socket) => {
      socket.end('bye from the server');
      uploaded = new Promise((resolve) => {
        const parts: Buffer[] = [];
        socket.on('data', (c: Buffer) => parts.push(c));
        socket.on('end', () => resolve(Buffer.concat(parts)));
      });
    });
    const relay = await startRelay();
    await startShare(relay.url, afterEof, { name: 'eof', secret: SECRET, allow: [`127.0.0.1:${closesFirst}`] });
    const a = await startConnector(relay.url, 'eof', { secret: SECRET });
    const s1 = await dial(a.port);
    const reply = readAll(s1);
    s1.end('question, then EOF');
    const r = await reply;
    expect(serverGot).toBe('question, then EOF');
    expect(r.ended).toBe('end');
    expect(r.data.equals(answer)).toBe(true);

    const b = await startConnector(relay.url, 'eof', { secret: SECRET, target: `127.0.0.1:${closesFirst}` });
    const s2 = await dial(b.port);
    const fromServer = readAll(s2);
    await new Promise<void>((resolve) => s2.once('end', () => resolve()));
    s2.end(upload);
    expect((await fromServer).data.toString()).toBe('bye from the server');
    await waitFor(() => uploaded !== undefined, 1000, 'server connection');
    expect((await (uploaded as Promise<Buffer>)).equals(upload)).toBe(true);
  });

  test('a wrong or missing secret: the local client gets a clean close; relay and connector log BURROW_ERR_SHARE_DENIED; the share never dials', async () => {
    let dialled = 0;
    const localPort = await startTcpServer((socket) => {
      dialled++;
      echo(socket);
    });
    const relay = await loggedRelay();
    await startShare(relay.url, localPort, { name: 'db', secret: SECRET });
    for (const secret of ['wrong-secret', undefined]) {
      const c = await startConnector(relay.url, 'db', secret !== undefined ? { secret } : {});
      const r = await readAll(await dial(c.port));
      expect(r).toEqual({ data: Buffer.alloc(0), ended: 'end' });
      await waitFor(() => c.events.length > 0, 2000, 'connector event');
      expect(c.events[0]?.error).toBe('BURROW_ERR_SHARE_DENIED');
      expect(c.events[0]?.detail).toMatch(secret !== undefined ? /secret for share "db" is wrong/ : /needs its secret/);
    }
    const denied = relay.lines.filter((l) => l.code === 'BURROW_ERR_SHARE_DENIED');
    expect(denied.length).toBe(2);
    expect(String(denied[0]?.msg)).toMatch(/share connection refused: the secret for share "db" is wrong/);
    expect(dialled).toBe(0);
    // An unknown share is refused the same way, with its own code.
    const nobody = await startConnector(relay.url, 'nobody', { secret: SECRET });
    expect((await roundTrip(nobody.port)).ended).toBe('end');
    await waitFor(() => nobody.events.length > 0, 2000, 'connector event');
    expect(nobody.events[0]?.error).toBe('BURROW_ERR_UNKNOWN_TUNNEL');
    // And the right secret works.
    const ok = await startConnector(relay.url, 'db', { secret: SECRET });
    expect(await roundTrip(ok.port)).toEqual({ data: 'ping', ended: 'end' });
  });

  test('tenancy: an agent of the same tenant needs no secret; another tenant is denied without it and let in with it', async () => {
    const localPort = await startTcpServer(echo);
    const store = new FileTenantStore();
    const relay = await loggedRelay({ auth: 'token' }, undefined, { tenantStore: store });
    const acme = await store.createTenant({ name: 'Acme' });
    const other = await store.createTenant({ name: 'Other' });
    const acmeShare = (await store.createToken(acme.id)).token;
    const acmeConnect = (await store.createToken(acme.id)).token;
    const otherToken = (await store.createToken(other.id)).token;
    await startShare(relay.url, localPort, { name: 'acme-db', secret: SECRET, token: acmeShare });
    const same = await startConnector(relay.url, 'acme-db', { token: acmeConnect });
    expect(await roundTrip(same.port)).toEqual({ data: 'ping', ended: 'end' });
    const stranger = await startConnector(relay.url, 'acme-db', { token: otherToken });
    expect(await roundTrip(stranger.port)).toEqual({ data: '', ended: 'end' });
    await waitFor(() => stranger.events.length > 0, 2000, 'connector event');
    expect(stranger.events[0]?.error).toBe('BURROW_ERR_SHARE_DENIED');
    expect(relay.lines.some((l) => l.code === 'BURROW_ERR_SHARE_DENIED')).toBe(true);
    const withSecret = await startConnector(relay.url, 'acme-db', { token: otherToken, secret: SECRET });
    expect(await roundTrip(withSecret.port)).toEqual({ data: 'ping', ended: 'end' });
  });

  test('the allow-list: another allowed target is reached; anything else is refused by the sharing agent with the reason', async () => {
    const main = await startTcpServer((socket) => socket.end('main'));
    const second = await startTcpServer((socket) => socket.end('second'));
    let strayDialled = false;
    const stray = await startTcpServer((socket) => {
      strayDialled = true;
      socket.end('stray');
    });
    const relay = await loggedRelay();
    const share = await startShare(relay.url, `127.0.0.1:${main}`, { name: 'multi', secret: SECRET, allow: [`127.0.0.1:${second}`] });
    const toMain = await startConnector(relay.url, 'multi', { secret: SECRET });
    expect((await roundTrip(toMain.port)).data).toBe('main');
    const toSecond = await startConnector(relay.url, 'multi', { secret: SECRET, target: `127.0.0.1:${second}` });
    expect((await roundTrip(toSecond.port)).data).toBe('second');
    const toStray = await startConnector(relay.url, 'multi', { secret: SECRET, target: `127.0.0.1:${stray}` });
    expect(await roundTrip(toStray.port)).toEqual({ data: '', ended: 'end' });
    await waitFor(() => toStray.events.length > 0 && share.events.some((e) => e.error !== undefined), 2000, 'events');
    expect(toStray.events[0]?.error).toBe('BURROW_ERR_TARGET_NOT_ALLOWED');
    expect(toStray.events[0]?.detail).toContain(`target 127.0.0.1:${stray} is not shared by "multi"; allowed: 127.0.0.1:${main}, 127.0.0.1:${second}`);
    expect(share.events.find((e) => e.error !== undefined)?.error).toBe('BURROW_ERR_TARGET_NOT_ALLOWED');
    await waitFor(() => relay.lines.some((l) => l.code === 'BURROW_ERR_TARGET_NOT_ALLOWED'), 2000, 'relay log line');
    expect(strayDialled).toBe(false);
  });

  test('the share name is bound to its key: another key gets BURROW_ERR_NAME_TAKEN; the same key may come back', async () => {
    const localPort = await startTcpServer(echo);
    const relay = await startRelay();
    const keyPair = newKey();
    const first = await startShare(relay.url, localPort, { name: 'mine', secret: SECRET, keyPair });
    await expect(startShare(relay.url, localPort, { name: 'mine', secret: SECRET })).rejects.toMatchObject({ code: 'BURROW_ERR_NAME_TAKEN' });
    await first.agent.close();
    await startShare(relay.url, localPort, { name: 'mine', secret: SECRET, keyPair });
    const c = await startConnector(relay.url, 'mine', { secret: SECRET });
    expect(await roundTrip(c.port)).toEqual({ data: 'ping', ended: 'end' });
  });

  test('--tcp-max-connections caps a share: the extra connection is closed cleanly with a log line on both sides', async () => {
    const localPort = await startTcpServer(echo);
    const relay = await loggedRelay({ tcpMaxConnections: 2 });
    await startShare(relay.url, localPort, { name: 'capped', secret: SECRET });
    const c = await startConnector(relay.url, 'capped', { secret: SECRET });
    const open: Socket[] = [];
    for (let i = 0; i < 2; i++) {
      const s = await dial(c.port);
      const first = new Promise((r) => s.once('data', r));
      s.write('x');
      await first;
      open.push(s);
    }
    expect(await roundTrip(c.port)).toEqual({ data: '', ended: 'end' });
    await waitFor(() => c.events.some((e) => e.error === 'BURROW_ERR_TCP_CONNECTION_LIMIT'), 2000, 'connector event');
    expect(relay.lines.some((l) => l.code === 'BURROW_ERR_TCP_CONNECTION_LIMIT')).toBe(true);
    (open[0] as Socket).end();
    await waitFor(async () => (await roundTrip(c.port, 'y')).data === 'y', 3000, 'a free slot');
  });

  test('--tcp-idle-timeout-ms: an idle share connection is closed cleanly on both sides, with the reason', async () => {
    const localPort = await startTcpServer(echo);
    const relay = await loggedRelay({ tcpIdleTimeoutMs: 300 });
    const share = await startShare(relay.url, localPort, { name: 'idle', secret: SECRET });
    const c = await startConnector(relay.url, 'idle', { secret: SECRET });
    const socket = await dial(c.port);
    const started = Date.now();
    const r = readAll(socket);
    socket.write('a');
    expect(await r).toEqual({ data: Buffer.from('a'), ended: 'end' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    await waitFor(() => c.events.length > 0 && share.events.length > 0, 2000, 'events');
    expect(c.events[0]?.error).toBe('BURROW_ERR_TCP_IDLE');
    expect(share.events[0]?.error).toBe('BURROW_ERR_TCP_IDLE');
    expect(relay.lines.some((l) => l.code === 'BURROW_ERR_TCP_IDLE')).toBe(true);
  });

  test('two relay nodes on Redis: the share on node A, the connector on node B', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const localPort = await startTcpServer(echo);
    const node = async (id: string) => {
      const nodeId = `${id}-${process.pid}-${randomBytes(3).toString('hex')}`;
      return startRelay({ nodeId, leaseTtlMs: 1500 }, new RedisBus({ nodeId, url: redis.url, leaseTtlMs: 1500 }));
    };
    const a = await node('a');
    const b = await node('b');
    await startShare(a.url, localPort, { name: 'far', secret: SECRET });
    const ok = await startConnector(b.url, 'far', { secret: SECRET });
    const big = randomBytes(2_000_000);
    const socket = await dial(ok.port);
    const reply = readAll(socket);
    socket.end(big);
    const r = await reply;
    expect(r.ended).toBe('end');
    expect(r.data.equals(big)).toBe(true);
    const wrong = await startConnector(b.url, 'far', { secret: 'nope' });
    expect(await roundTrip(wrong.port)).toEqual({ data: '', ended: 'end' });
    await waitFor(() => wrong.events.length > 0, 2000, 'connector event');
    expect(wrong.events[0]?.error).toBe('BURROW_ERR_SHARE_DENIED');
  });
});

describe('protocol', () => {
  test('an agent that did not register with "connect" may not open streams: the session ends with BURROW_ERR_PROTOCOL', async () => {
    const relay = await startRelay();
    const raw = await RawAgent.open(relay.url);
    await raw.register(newKey(), relay.url);
    await raw.next(FrameType.REGISTERED);
    raw.send(encodeFrame(FrameType.OPEN, 0, 2, encodeConnectRequest({ share: 'db', secret: 'x' })));
    const error = await raw.next(FrameType.ERROR);
    expect(decodeReason(error.payload).code).toBe('BURROW_ERR_PROTOCOL');
    expect(await raw.closed()).toBe(1002);
  });

  test('a connector: ids must be even and increase; a bad connect request is a RESET, not the end of the session', async () => {
    const relay = await startRelay();
    const raw = await RawAgent.open(relay.url);
    await raw.register(newKey(), relay.url, { connect: true });
    const registered = await raw.next(FrameType.REGISTERED);
    expect(JSON.parse(registered.payload.toString())).toMatchObject({ url: '' });
    raw.send(encodeFrame(FrameType.OPEN, 0, 2, Buffer.from('{"share":"db","extra":1}')));
    const reset = await raw.next(FrameType.RESET);
    expect([reset.streamId, decodeReason(reset.payload).code]).toEqual([2, 'BURROW_ERR_BAD_REQUEST']);
    raw.send(encodeFrame(FrameType.OPEN, 0, 2, encodeConnectRequest({ share: 'db' })));
    expect(decodeReason((await raw.next(FrameType.ERROR)).payload).code).toBe('BURROW_ERR_PROTOCOL');
  });
});

describe('burrow start --config (the shipped binary)', () => {
  test('a tcp forward, a share and a connect in one file', async () => {
    const localPort = await startTcpServer(echo);
    const range = await freeRange(1);
    const relay = await startRelay({ tcpPorts: range });
    const listenPort = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'burrow-share-start-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'burrow.yml');
    writeFileSync(
      file,
      [
        `relay: ${relay.url}`,
        'forwards:',
        `  - { name: pub, tcp: ${localPort} }`,
        `  - { name: db, share: "127.0.0.1:${localPort}", secret: "\${DB_SECRET}" }`,
        `  - { name: db-client, connect: db, listen: "127.0.0.1:${listenPort}", secret: "\${DB_SECRET}" }`,
        '',
      ].join('\n'),
    );
    const child: ChildProcess = spawn(process.execPath, [AGENT_BIN, 'start', '--config', file, '--json'], {
      env: { ...process.env, BURROW_HOME: dir, BURROW_TOKEN: '', BURROW_RELAY: '', DB_SECRET: SECRET },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    cleanups.push(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    const events: Record<string, unknown>[] = [];
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (l) => events.push(JSON.parse(l) as Record<string, unknown>));
    const online = (name: string) => events.find((e) => e.event === 'online' && e.forward === name);
    await waitFor(() => ['pub', 'db', 'db-client'].every((n) => online(n) !== undefined), 8000, `all online (${stderr})`);
    expect(online('pub')?.tcpUrl).toBe(`tcp://localhost:${range.first}`);
    expect(online('db')?.share).toBe('db');
    expect(await roundTrip(range.first)).toEqual({ data: 'ping', ended: 'end' });
    expect(await roundTrip(listenPort, 'through the share')).toEqual({ data: 'through the share', ended: 'end' });
    child.kill('SIGTERM');
    expect(await exit).toBe(0);
  }, 20_000);
});
