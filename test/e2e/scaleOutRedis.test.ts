/**
 * Relay nodes joined through real redis-server processes: cross-node routing of every kind of
 * traffic, a holding node killed with SIGKILL, Redis killed and restarted under traffic, lease
 * expiry, the same key on two nodes, and Redis Cluster with sharded pub/sub. Each failure test
 * states the bound it checks in its name; short lease and grace periods keep them fast.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { connect } from '@burrow/agent';
import { RedisBus } from '@burrow/bus';
import { FrameType } from '@burrow/protocol';
import WebSocket, { WebSocketServer } from 'ws';
import { cleanup, cleanups, freePort, newKey, RawAgent, request, startApp, startRelay, startTunnel, waitFor } from '../kit';
import { type RedisCluster, type RedisServer, startRedis, startRedisCluster } from '../redis';

const RELAY_BIN = join(__dirname, '../../apps/relay/dist/main.js');

afterEach(cleanup);

const hostOn = (label: string, port: number): string => `${label}.localhost:${port}`;

let nodeSeq = 0;
/** An in-process relay on the Redis bus. */
async function redisNode(redis: { url?: string; cluster?: readonly string[] }, overrides: Parameters<typeof startRelay>[0] = {}) {
  const nodeId = `n${++nodeSeq}-${process.pid}`;
  const leaseTtlMs = overrides.leaseTtlMs ?? 1500;
  const bus = new RedisBus({ nodeId, ...redis, leaseTtlMs });
  return startRelay({ nodeId, leaseTtlMs, ...overrides }, bus);
}

/** A relay as its own process (so it can be SIGKILLed), on the Redis bus. */
async function relayProcess(redisUrl: string, extra: string[] = []): Promise<{ url: string; port: number; nodeId: string; child: ChildProcess }> {
  const port = await freePort();
  const nodeId = `proc${++nodeSeq}-${process.pid}`;
  const child = spawn(
    process.execPath,
    [
      RELAY_BIN,
      '--port',
      String(port),
      '--host',
      '127.0.0.1',
      '--redis',
      redisUrl,
      '--node-id',
      nodeId,
      '--lease-ttl-ms',
      '1500',
      '--log-level',
      'warn',
      ...extra,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, BURROW_ADMIN_LISTEN: 'off' } },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const url = `http://localhost:${port}`;
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`relay process exited: ${stderr}`);
      try {
        return (await request(port, `localhost:${port}`, { path: '/healthz' })).status === 200;
      } catch {
        return false;
      }
    },
    8000,
    'relay process ready',
  );
  return { url, port, nodeId, child };
}

describe('relays on a standalone Redis', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis.stop();
  });

  test('an agent on relay A is reached through relays B and C: requests, bodies both ways, streamed responses, WebSockets', async () => {
    const { server, port: appPort } = await startApp((req, res) => {
      if (req.url === '/sse') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.flushHeaders();
        let n = 0;
        const t = setInterval(() => {
          res.write(`data: ${++n}\n\n`);
          if (n === 3) {
            clearInterval(t);
            res.end();
          }
        }, 10);
        return;
      }
      const h = createHash('sha256');
      let bytes = 0;
      req.on('data', (c: Buffer) => {
        h.update(c);
        bytes += c.length;
      });
      req.on('end', () => {
        if (req.url === '/big') res.end(Buffer.alloc(300_000, 7));
        else res.end(JSON.stringify({ bytes, sha: h.digest('hex') }));
      });
    });
    const wss = new WebSocketServer({ server });
    wss.on('connection', (ws) => ws.on('message', (d, bin) => ws.send(d, { binary: bin })));
    cleanups.push(() => wss.close());
    const url = { url: redis.url };
    const a = await redisNode(url);
    const b = await redisNode(url);
    const c = await redisNode(url);
    const tunnel = await startTunnel(a.url, appPort);
    const body = Buffer.alloc(400_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
    for (const node of [b, c]) {
      const host = hostOn(tunnel.label, node.port);
      const posted = await request(node.port, host, { method: 'POST', body });
      expect(posted.status).toBe(200);
      expect(JSON.parse(posted.text)).toEqual({ bytes: body.length, sha: createHash('sha256').update(body).digest('hex') });
      const big = await request(node.port, host, { path: '/big' });
      expect(big.body.equals(Buffer.alloc(300_000, 7))).toBe(true);
      const sse = await request(node.port, host, { path: '/sse' });
      expect(sse.text).toBe('data: 1\n\ndata: 2\n\ndata: 3\n\n');
      const ws = new WebSocket(`ws://127.0.0.1:${node.port}/`, { headers: { host } });
      cleanups.push(() => ws.terminate());
      await new Promise((r) => ws.once('open', r));
      const echoed = new Promise<Buffer>((r) => ws.once('message', (d: Buffer) => r(d)));
      ws.send(Buffer.from([0, 1, 2, 255]));
      expect([...(await echoed)]).toEqual([0, 1, 2, 255]);
      ws.close();
    }
    expect(a.relay.stats().sessions).toBe(1);
    await waitFor(
      () => [a, b, c].every((n) => n.relay.stats().ingressStreams === 0 && n.relay.stats().agentStreams === 0),
      3000,
      'streams released on every node',
    );
    // Limits and errors hold across nodes.
    const tooBig = await request(b.port, hostOn(tunnel.label, b.port), { method: 'POST', body: Buffer.alloc(600_000) });
    expect(tooBig.status).toBe(413);
    const unknown = await request(b.port, hostOn('nosuchtunnel', b.port));
    expect(unknown.status).toBe(404);
    expect(unknown.headers['x-burrow-error']).toBe('BURROW_ERR_UNKNOWN_TUNNEL');
  });

  test('the same key on two nodes: the newer session takes the label, the older agent is told and stops', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('hi'));
    const a = await redisNode({ url: redis.url });
    const b = await redisNode({ url: redis.url });
    const c = await redisNode({ url: redis.url });
    const key = newKey();
    const first = await startTunnel(a.url, appPort, { keyPair: key });
    const fatal = new Promise<Error>((r) => first.agent.once('fatal', r));
    const second = await startTunnel(b.url, appPort, { keyPair: key });
    expect(second.label).toBe(first.label);
    expect((await fatal).message).toMatch(/newer session/);
    await waitFor(() => a.relay.stats().sessions === 0, 3000, 'old session closed on A');
    expect((await request(c.port, hostOn(first.label, c.port))).text).toBe('hi');
    expect(b.relay.stats().sessions).toBe(1);
  });

  test('a lease that is not renewed expires within the lease period; the label then reads offline (bound: lease TTL + 1 s)', async () => {
    const node = await relayProcess(redis.url);
    const raw = await RawAgent.open(node.url);
    await raw.register(newKey(), node.url);
    const { label } = JSON.parse((await raw.next(FrameType.REGISTERED)).payload.toString()) as { label: string };
    const observer = new RedisBus({ nodeId: `observer-${process.pid}`, url: redis.url });
    cleanups.push(() => observer.close());
    expect((await observer.registry.lookup(label)).state).toBe('online');
    const killedAt = Date.now();
    node.child.kill('SIGKILL');
    await waitFor(async () => (await observer.registry.lookup(label)).state === 'offline', 2500, 'lease expiry');
    const took = Date.now() - killedAt;
    expect(took).toBeLessThan(1500 + 1000);
  });

  test('SIGKILL of the holding relay: requests on other nodes fail fast with 502, then succeed once the agent is back through another node (bounds: 1 s, 3 s)', async () => {
    let hold: (() => void) | undefined;
    const { port: appPort } = await startApp((req, res) => {
      if (req.url === '/hold') hold = () => res.end('late');
      else res.end('alive');
    });
    const holder = await relayProcess(redis.url);
    const b = await redisNode({ url: redis.url }, { reconnectGraceMs: 200 });
    // The agent knows both relays; it waits 1.5 s before its first retry so the outage is visible.
    const tunnel = await startTunnel(`${holder.url},${b.url}`, appPort, { reconnectInitialMs: 3000, reconnectMaxMs: 3000 });
    const host = hostOn(tunnel.label, b.port);
    expect((await request(b.port, host)).text).toBe('alive');
    // A request in flight through the holder when it dies.
    const inFlight = request(b.port, host, { path: '/hold' });
    await waitFor(() => hold !== undefined, 3000, 'request at the app');
    const back = new Promise<{ relay: string; label: string }>((r) => tunnel.agent.once('online', r));
    const killedAt = Date.now();
    holder.child.kill('SIGKILL');
    const cut = await inFlight;
    const cutAfter = Date.now() - killedAt;
    expect(cut.status).toBe(502);
    expect(cut.headers['x-burrow-error']).toBe('BURROW_ERR_NODE_UNREACHABLE');
    expect(cutAfter).toBeLessThan(1000);
    // A new request while the agent is still away: 502 after the short grace, not the 30 s timeout.
    const started = Date.now();
    const failed = await request(b.port, host);
    expect(failed.status).toBe(502);
    expect(['BURROW_ERR_NODE_UNREACHABLE', 'BURROW_ERR_TUNNEL_OFFLINE']).toContain(failed.headers['x-burrow-error']);
    expect(Date.now() - started).toBeLessThan(1000);
    // The agent comes back through the other relay with the same label, and requests succeed again.
    const online = await back;
    expect(online.relay).toBe(b.url);
    expect(online.label).toBe(tunnel.label);
    expect(Date.now() - killedAt).toBeLessThan(3000 + 1500);
    expect((await request(b.port, host)).text).toBe('alive');
  });

  test('SIGKILL of the holding relay mid-request: a GET is sent again and succeeds once the agent is back; a POST gets 502 (bound: 3 s)', async () => {
    let holds = 0;
    let postArrived = false;
    const { port: appPort } = await startApp((req, res) => {
      if (req.method === 'POST') {
        postArrived = true; // never answered: it dies with the node
        return;
      }
      holds++;
      if (holds >= 2) res.end(`attempt ${holds}`); // the first attempt dies with the node
    });
    const holder = await relayProcess(redis.url);
    const b = await redisNode({ url: redis.url }, { reconnectGraceMs: 3000 });
    const tunnel = await startTunnel(`${holder.url},${b.url}`, appPort);
    const host = hostOn(tunnel.label, b.port);
    const get = request(b.port, host, { path: '/hold' });
    const post = request(b.port, host, { method: 'POST', body: 'once only' });
    await waitFor(() => holds === 1 && postArrived, 3000, 'both requests at the app');
    const killedAt = Date.now();
    holder.child.kill('SIGKILL');
    const [g, p] = await Promise.all([get, post]);
    expect(g.status).toBe(200);
    expect(g.text).toBe('attempt 2');
    expect(p.status).toBe(502);
    expect(p.headers['x-burrow-error']).toBe('BURROW_ERR_NODE_UNREACHABLE');
    expect(Date.now() - killedAt).toBeLessThan(3000);
  });

  test('Redis killed under traffic: local tunnels keep working, cross-node requests get 503 fast; after a restart (empty) leases come back without a relay restart (bounds: 1 s, 5 s)', async () => {
    const own = await startRedis();
    cleanups.push(() => own.stop());
    const { port: appPort } = await startApp((_req, res) => res.end('up'));
    const a = await redisNode({ url: own.url });
    const b = await redisNode({ url: own.url });
    const tunnel = await startTunnel(a.url, appPort, { reconnectInitialMs: 50, reconnectMaxMs: 200 });
    expect((await request(b.port, hostOn(tunnel.label, b.port))).text).toBe('up');
    await own.kill();
    // The node holding the agent still serves it.
    const local = await request(a.port, hostOn(tunnel.label, a.port));
    expect(local.status).toBe(200);
    expect(local.text).toBe('up');
    // The other node cannot reach the registry: 503 with a clear code, at once.
    const started = Date.now();
    const remote = await request(b.port, hostOn(tunnel.label, b.port));
    expect(remote.status).toBe(503);
    expect(remote.headers['x-burrow-error']).toBe('BURROW_ERR_BUS_UNAVAILABLE');
    expect(Date.now() - started).toBeLessThan(1000);
    // A new agent cannot register while Redis is away: refused with a clear code, it keeps trying.
    const late = connect({ relay: b.url, to: appPort, keyPair: newKey(), timeoutMs: 10_000, reconnectInitialMs: 50, reconnectMaxMs: 200 });
    const lateTunnel = late.then((t) => {
      cleanups.push(() => t.close());
      return t;
    });
    const refusedAgent = new RawAgent(new WebSocket(`${b.url.replace('http', 'ws')}/_burrow/connect`));
    cleanups.push(() => refusedAgent.ws.terminate());
    await new Promise((r) => refusedAgent.ws.once('open', r));
    await refusedAgent.register(newKey(), b.url);
    const refusal = await refusedAgent.next(FrameType.ERROR);
    expect(refusal.payload.toString('latin1')).toContain('Redis');
    expect(await refusedAgent.closed()).toBe(1013);
    const restartedAt = Date.now();
    await own.restart();
    // Both relays reconnect and the holder re-announces its lease (Redis came back empty).
    await waitFor(
      async () => {
        try {
          return (await request(b.port, hostOn(tunnel.label, b.port))).text === 'up';
        } catch {
          return false;
        }
      },
      5000,
      'cross-node request after Redis restart',
    );
    expect(Date.now() - restartedAt).toBeLessThan(5000);
    expect(a.relay.stats().sessions).toBe(1);
    // The agent that was refused got in once Redis was back.
    const t = await lateTunnel;
    expect((await request(a.port, hostOn(t.label, a.port))).text).toBe('up');
  });
});

describe('Redis restarted during continuous traffic', () => {
  test('requests keep flowing through both nodes while Redis is killed and restarted: the holder answers every one, the other node only 200 or a fast 503, none hangs (bounds: 2 s per request, back within 5 s)', async () => {
    const own = await startRedis();
    cleanups.push(() => own.stop());
    const { port: appPort } = await startApp((_req, res) => res.end('up'));
    const a = await redisNode({ url: own.url });
    const b = await redisNode({ url: own.url });
    const tunnel = await startTunnel(a.url, appPort, { reconnectInitialMs: 50, reconnectMaxMs: 200 });
    const seen = { a: new Map<string, number>(), b: new Map<string, number>() };
    let slowest = 0;
    let running = true;
    const loop = async (node: { port: number }, into: Map<string, number>): Promise<void> => {
      while (running) {
        const started = Date.now();
        const r = await request(node.port, hostOn(tunnel.label, node.port));
        slowest = Math.max(slowest, Date.now() - started);
        const key = r.status === 200 ? '200' : `${r.status} ${String(r.headers['x-burrow-error'])}`;
        into.set(key, (into.get(key) ?? 0) + 1);
      }
    };
    const loops = [loop(a, seen.a), loop(b, seen.b), loop(b, seen.b)];
    await waitFor(() => (seen.b.get('200') ?? 0) > 20, 3000, 'traffic flowing');
    await own.kill();
    await waitFor(() => [...seen.b.keys()].some((k) => k.startsWith('503')), 3000, 'the other node noticing');
    const beforeRestart = seen.b.get('200') ?? 0;
    await own.restart();
    const restartedAt = Date.now();
    await waitFor(() => (seen.b.get('200') ?? 0) > beforeRestart + 20, 5000, 'cross-node traffic back');
    const backAfter = Date.now() - restartedAt;
    running = false;
    await Promise.all(loops);
    // The holding node never failed a request; the other node gave 200s and fast 503s only.
    expect([...seen.a.keys()]).toEqual(['200']);
    for (const k of seen.b.keys()) expect(['200', '503 BURROW_ERR_BUS_UNAVAILABLE']).toContain(k);
    expect(slowest).toBeLessThan(2000);
    expect(backAfter).toBeLessThan(5000);
  });
});

describe('relays on a Redis Cluster (sharded pub/sub)', () => {
  let cluster: RedisCluster;
  beforeAll(async () => {
    cluster = await startRedisCluster(3);
  }, 30_000);
  afterAll(async () => {
    await cluster.stop();
  });

  test('an agent on relay A is reached through relays B and C: requests, bodies and WebSockets', async () => {
    const { server, port: appPort } = await startApp((req, res) => {
      let bytes = 0;
      req.on('data', (c: Buffer) => {
        bytes += c.length;
      });
      req.on('end', () => res.end(`got ${bytes}`));
    });
    const wss = new WebSocketServer({ server });
    wss.on('connection', (ws) => ws.on('message', (d, bin) => ws.send(d, { binary: bin })));
    cleanups.push(() => wss.close());
    const seeds = { cluster: cluster.seeds };
    const a = await redisNode(seeds);
    const b = await redisNode(seeds);
    const c = await redisNode(seeds);
    const tunnel = await startTunnel(a.url, appPort);
    for (const node of [b, c]) {
      const host = hostOn(tunnel.label, node.port);
      const r = await request(node.port, host, { method: 'POST', body: Buffer.alloc(400_000, 1) });
      expect(r.text).toBe('got 400000');
      const ws = new WebSocket(`ws://127.0.0.1:${node.port}/`, { headers: { host } });
      cleanups.push(() => ws.terminate());
      await new Promise((r2) => ws.once('open', r2));
      const echoed = new Promise<string>((r2) => ws.once('message', (d: Buffer) => r2(d.toString())));
      ws.send('over the cluster');
      expect(await echoed).toBe('over the cluster');
      ws.close();
    }
  });
});
