/**
 * Fault injection between agent and relay: the agent dials the relay through a FaultProxy that
 * cuts (FIN), resets (RST), blackholes (stall) or slows its connection at five moments: idle,
 * mid-request body, mid-response body, mid-WebSocket and mid-SSE stream. Every case checks, with
 * its bound in its name: what the public client gets (a coded status, or a connection that is
 * visibly cut, never a truncated body that looks complete), that the agent comes back at the same
 * URL and serves a fresh request, that no stream, session, socket or timer is left behind, and
 * that a second tunnel on the same relay (not behind the proxy) answers every request throughout,
 * one of them in flight across the fault. Then: a slow link past the request timeout (504), a
 * blackhole that swallows the agent's redials too, a proxy refusing connections while the agent
 * backs off, and faults in the middle of the agent's handshake.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import http, { type IncomingHttpHeaders } from 'node:http';
import type { Tunnel } from '@burrow/agent';
import type { Relay } from '@burrow/relay';
import WebSocket, { WebSocketServer } from 'ws';
import { FaultProxy } from '../faultProxy';
import { cleanup, cleanups, freePort, hostOf, request, startApp, startRelay, startTunnel, waitFor } from '../kit';

afterEach(cleanup);

/** Relay heartbeat: a blackholed agent is declared dead after about twice this. */
const PING_MS = 200;
/** The faulted agent's own watchdog (it waits at least 2 × PING_MS anyway). */
const DEAD_AFTER_MS = 400;
/** First redial after 100..200 ms: long enough to see the relay notice the drop before the agent is back. */
const RECONNECT_INITIAL_MS = 400;
/** Far above every bound asserted below, so a bound met is never the request timeout answering. */
const REQUEST_TIMEOUT_MS = 5000;
/** A cut or reset reaches both ends at once: the public client is answered within this. */
const CUT_BOUND_MS = 1000;
/** A blackhole is noticed by the relay's heartbeat (2 × PING_MS + ticks) or the agent's watchdog (DEAD_AFTER_MS + a tick). */
const STALL_BOUND_MS = 1500;
/** From the fault until the agent is registered again. */
const BACK_BOUND_MS = 2500;
/** A slow link: 1 MB/s each way plus 10 ms per chunk. Still fast enough for every heartbeat. */
const SLOW_BPS = 1_000_000;
const SLOW_LATENCY_MS = 10;
/** Streams, sessions, sockets and timers settle back within this after recovery. */
const SETTLE_MS = 3000;

type FaultKind = 'cut' | 'reset' | 'stall' | 'slow';
type Moment = 'idle' | 'mid-request' | 'mid-response-body' | 'mid-websocket' | 'mid-sse';

/** Deterministic, position-dependent bytes: a byte lost, added or reordered changes the hash. */
function pattern(n: number, seed = 0): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return b;
}
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Open TCP sockets and ref'd timers of this process (what keeps it alive). */
function resources(): { sockets: number; timers: number } {
  const info = process.getActiveResourcesInfo();
  return { sockets: info.filter((r) => r === 'TCPSocketWrap').length, timers: info.filter((r) => r === 'Timeout').length };
}

/**
 * The local app behind both tunnels. Responses close their connection, so no idle keep-alive
 * socket blurs the socket count. `hold` parks a response until the test releases it by id.
 */
async function faultApp() {
  const events = new EventEmitter();
  const holds = new Map<string, () => void>();
  const hold = (id: string, then: () => void): void => {
    holds.set(id, then);
    events.emit('held', id);
  };
  const { server, port } = await startApp((req, res) => {
    res.setHeader('connection', 'close');
    const url = new URL(req.url ?? '/', 'http://app');
    const id = url.searchParams.get('id') ?? '';
    res.on('close', () => {
      if (!res.writableFinished) events.emit('aborted', id);
    });
    switch (url.pathname) {
      case '/ok':
        req.resume();
        res.end('ok');
        return;
      case '/upload': {
        const h = createHash('sha256');
        let bytes = 0;
        req.on('data', (c: Buffer) => {
          h.update(c);
          bytes += c.length;
          events.emit('upload', id, bytes);
        });
        req.on('end', () => res.end(JSON.stringify({ bytes, sha: h.digest('hex') })));
        return;
      }
      case '/download': {
        const body = pattern(Number(url.searchParams.get('bytes')));
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
        if (id === '') {
          res.end(body);
          return;
        }
        const first = Math.min(body.length, 64 * 1024);
        res.write(body.subarray(0, first));
        hold(id, () => res.end(body.subarray(first)));
        return;
      }
      case '/sse': {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
        let n = 0;
        const tick = setInterval(() => res.write(`data: ${++n}\n\n`), 20);
        res.on('close', () => clearInterval(tick));
        hold(id, () => {
          clearInterval(tick);
          res.end();
        });
        return;
      }
      case '/hold':
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first;');
        hold(id, () => res.end('second'));
        return;
      default:
        res.writeHead(404).end();
    }
  });
  // WebSocket: echoes every message, and pushes a text tick every 20 ms.
  const wss = new WebSocketServer({ server, path: '/ws' });
  wss.on('connection', (ws) => {
    ws.on('error', () => {});
    ws.on('message', (data: Buffer, isBinary) => ws.send(data, { binary: isBinary }));
    let n = 0;
    const tick = setInterval(() => ws.send(`tick ${++n}`), 20);
    ws.on('close', () => clearInterval(tick));
  });
  cleanups.push(() => new Promise<void>((r) => wss.close(() => r())));
  return {
    port,
    wss,
    events,
    /** Resolves once a response with this id is parked. */
    held: (id: string): Promise<void> => waitFor(() => holds.has(id), 3000, `response ${id} parked at the app`),
    release(id: string): void {
      const go = holds.get(id);
      if (go === undefined) throw new Error(`no parked response ${id}`);
      holds.delete(id);
      go();
    },
    aborted: (id: string): Promise<void> => new Promise((resolve) => events.on('aborted', (which: string) => which === id && resolve())),
  };
}
type App = Awaited<ReturnType<typeof faultApp>>;

interface Settled {
  /** The message arrived whole (Content-Length reached, or the terminal chunk seen). */
  readonly complete: boolean;
  readonly at: number;
}

/** A GET whose body is watched as it arrives. */
function streamGet(port: number, host: string, path: string) {
  const parts: Buffer[] = [];
  let received = 0;
  let head: { status: number; headers: IncomingHttpHeaders } | undefined;
  let settle: (s: Settled) => void = () => {};
  const settled = new Promise<Settled>((r) => {
    settle = r;
  });
  const req = http.request({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
    head = { status: res.statusCode ?? 0, headers: res.headers };
    res.on('data', (c: Buffer) => {
      parts.push(c);
      received += c.length;
    });
    res.on('error', () => {});
    res.on('close', () => settle({ complete: res.complete, at: Date.now() }));
  });
  req.on('error', () => settle({ complete: false, at: Date.now() }));
  req.end();
  cleanups.push(() => void req.destroy());
  return {
    head: () => head,
    received: () => received,
    body: () => Buffer.concat(parts),
    settled,
  };
}

/** A chunked POST written piece by piece. */
function startUpload(port: number, host: string, path: string) {
  const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', headers: { host, 'transfer-encoding': 'chunked' }, agent: false });
  cleanups.push(() => void req.destroy());
  const response = new Promise<{ status: number; headers: IncomingHttpHeaders; body: string; at: number }>((resolve, reject) => {
    req.on('response', (res) => {
      const at = Date.now();
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, at }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  // A response before the body is done may make our own writes fail; the response is what counts.
  response.catch(() => {});
  return { req, response };
}

/** A WebSocket client that sorts what it gets into echoes (binary) and the app's ticks (text). */
async function openWs(port: number, host: string) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { host } });
  cleanups.push(() => ws.terminate());
  const echoes: Buffer[] = [];
  let ticks = 0;
  ws.on('message', (data: Buffer, isBinary) => {
    if (isBinary) echoes.push(data);
    else ticks++;
  });
  ws.on('error', () => {});
  const closed = new Promise<{ code: number; reason: string; at: number }>((resolve) =>
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString(), at: Date.now() })),
  );
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade answered ${res.statusCode}`)));
  });
  return { ws, echoes, ticks: () => ticks, closed };
}

interface Env {
  readonly relay: Relay;
  readonly relayPort: number;
  readonly proxy: FaultProxy;
  readonly app: App;
  /** Behind the proxy. */
  readonly tunnel: Tunnel;
  readonly host: string;
  /** Straight to the relay. */
  readonly other: Tunnel;
  readonly otherHost: string;
  /** 'offline' events of the faulted agent. */
  offlines: number;
}

/** A relay; an agent dialling it through a fault proxy; a second agent dialling it directly. */
async function setup(relayOverrides: Parameters<typeof startRelay>[0] = {}, agentOptions: Parameters<typeof startTunnel>[2] = {}): Promise<Env> {
  const app = await faultApp();
  const proxyPort = await freePort();
  // The agent signs its registration for the address it dials: the proxy's.
  const relay = await startRelay({
    pingIntervalMs: PING_MS,
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
    extraAudiences: [`localhost:${proxyPort}`],
    ...relayOverrides,
  });
  const proxy = await FaultProxy.start({ port: proxyPort, targetPort: relay.port });
  cleanups.push(() => proxy.close());
  const tunnel = await startTunnel(`http://localhost:${proxyPort}`, app.port, {
    deadAfterMs: DEAD_AFTER_MS,
    reconnectInitialMs: RECONNECT_INITIAL_MS,
    reconnectMaxMs: 1000,
    ...agentOptions,
  });
  const other = await startTunnel(relay.url, app.port);
  const env: Env = {
    relay: relay.relay,
    relayPort: relay.port,
    proxy,
    app,
    tunnel,
    host: hostOf(tunnel.url),
    other,
    otherHost: hostOf(other.url),
    offlines: 0,
  };
  tunnel.agent.on('offline', () => {
    env.offlines++;
  });
  return env;
}

function applyFault(proxy: FaultProxy, fault: FaultKind): void {
  if (fault === 'cut') proxy.cut();
  else if (fault === 'reset') proxy.reset();
  // The blackhole takes the connections open now; the agent's redial gets a fresh path (a dead NAT entry).
  else if (fault === 'stall') proxy.stall(false);
  else proxy.slow(SLOW_BPS, SLOW_LATENCY_MS);
}

/** Traffic on the second tunnel while the fault runs: a response in flight across it, and a stream of GETs. */
function otherTraffic(env: Env) {
  const inFlight = streamGet(env.relayPort, env.otherHost, '/hold?id=other');
  const statuses: string[] = [];
  let stop = false;
  const loop = (async () => {
    while (!stop) {
      const r = await request(env.relayPort, env.otherHost, { path: '/ok' });
      statuses.push(`${r.status} ${r.text}`);
      await new Promise((res) => setTimeout(res, 20));
    }
  })();
  return {
    ready: () => env.app.held('other'),
    async finish(): Promise<void> {
      stop = true;
      await loop;
      env.app.release('other');
      const s = await inFlight.settled;
      expect(s.complete).toBe(true);
      expect(inFlight.head()?.status).toBe(200);
      expect(inFlight.body().toString()).toBe('first;second');
      expect(statuses.length).toBeGreaterThan(3);
      expect(statuses.filter((x) => x !== '200 ok')).toEqual([]);
    },
  };
}

/** The bound the public client is answered within after a breaking fault. */
const boundOf = (fault: FaultKind): number => (fault === 'stall' ? STALL_BOUND_MS : CUT_BOUND_MS);

/**
 * Starts the moment's traffic, applies the fault at the right point, and checks what the public
 * client gets. Returns when the public side is settled.
 */
const moments: Record<Moment, (env: Env, fault: FaultKind) => Promise<void>> = {
  async idle(env, fault) {
    const bound = boundOf(fault);
    if (fault === 'slow') {
      applyFault(env.proxy, fault);
      const started = Date.now();
      const r = await request(env.relayPort, env.host, { path: '/download?bytes=300000' });
      const ms = Date.now() - started;
      expect(r.status).toBe(200);
      expect(sha(r.body)).toBe(sha(pattern(300_000)));
      // 300 kB at 1 MB/s: the throttle was in the path, and the request still completed.
      expect(ms).toBeGreaterThanOrEqual(200);
      expect(ms).toBeLessThan(4000);
      return;
    }
    const faultAt = Date.now();
    applyFault(env.proxy, fault);
    if (fault === 'stall') {
      // A request sent into the blackhole is answered when the heartbeat gives up, not at the request timeout.
      const r = await request(env.relayPort, env.host, { path: '/ok' });
      expect(r.status).toBe(502);
      expect(r.headers['x-burrow-error']).toBe('BURROW_ERR_AGENT_DISCONNECTED');
      expect(Date.now() - faultAt).toBeLessThan(bound);
      return;
    }
    // The relay noticed the drop (the agent redials 100..200 ms later): a request now waits for it and gets 200.
    await waitFor(() => env.relay.stats().sessions === 1, bound, 'the relay to notice the drop');
    const sent = Date.now();
    const r = await request(env.relayPort, env.host, { path: '/ok' });
    expect(r.status).toBe(200);
    expect(r.text).toBe('ok');
    expect(Date.now() - sent).toBeLessThan(BACK_BOUND_MS);
  },

  async 'mid-request'(env, fault) {
    const up = startUpload(env.relayPort, env.host, '/upload?id=up');
    const first = pattern(32 * 1024, 1);
    up.req.write(first);
    await new Promise<void>((resolve) => env.app.events.on('upload', (id: string) => id === 'up' && resolve()));
    const faultAt = Date.now();
    applyFault(env.proxy, fault);
    if (fault === 'slow') {
      const rest = pattern(368 * 1024, 2);
      up.req.end(rest);
      const r = await up.response;
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toEqual({ bytes: first.length + rest.length, sha: sha(Buffer.concat([first, rest])) });
      // At least most of the 368 KiB went through the 1 MB/s throttle.
      expect(r.at - faultAt).toBeGreaterThanOrEqual(250);
      expect(r.at - faultAt).toBeLessThan(REQUEST_TIMEOUT_MS);
      return;
    }
    const appAborted = env.app.aborted('up');
    const r = await up.response;
    expect(r.status).toBe(502);
    expect(r.headers['x-burrow-error']).toBe('BURROW_ERR_AGENT_DISCONNECTED');
    expect(r.at - faultAt).toBeLessThan(boundOf(fault));
    // The agent gave up the local request too, so the app is not left waiting for the rest of the body.
    await appAborted;
    expect(Date.now() - faultAt).toBeLessThan(boundOf(fault) + 500);
  },

  async 'mid-response-body'(env, fault) {
    const total = 400_000;
    const get = streamGet(env.relayPort, env.host, `/download?bytes=${total}&id=down`);
    await env.app.held('down');
    await waitFor(() => get.received() > 0, 3000, 'the first body bytes at the client');
    expect(get.head()?.status).toBe(200);
    expect(get.head()?.headers['content-length']).toBe(String(total));
    const faultAt = Date.now();
    applyFault(env.proxy, fault);
    if (fault === 'slow') {
      env.app.release('down');
      const s = await get.settled;
      expect(s.complete).toBe(true);
      expect(sha(get.body())).toBe(sha(pattern(total)));
      // The 336 kB after the first 64 KiB went through the throttle.
      expect(s.at - faultAt).toBeGreaterThanOrEqual(200);
      return;
    }
    const s = await get.settled;
    // Cut short and visibly so: fewer bytes than announced, and the message is not complete.
    expect(s.complete).toBe(false);
    expect(get.received()).toBeLessThan(total);
    expect(get.body().equals(pattern(total).subarray(0, get.received()))).toBe(true);
    expect(s.at - faultAt).toBeLessThan(boundOf(fault));
  },

  async 'mid-websocket'(env, fault) {
    const client = await openWs(env.relayPort, env.host);
    for (let i = 0; i < 5; i++) client.ws.send(pattern(1000, i));
    await waitFor(() => client.echoes.length === 5 && client.ticks() >= 3, 3000, 'messages flowing both ways');
    expect(env.app.wss.clients.size).toBe(1);
    const faultAt = Date.now();
    applyFault(env.proxy, fault);
    if (fault === 'slow') {
      const sent = Array.from({ length: 20 }, (_, i) => pattern(16 * 1024, 10 + i));
      for (const m of sent) client.ws.send(m);
      await waitFor(() => client.echoes.length === 25, 5000, 'every echo through the slow link');
      // Exact and in order.
      expect(client.echoes.slice(5).map(sha)).toEqual(sent.map(sha));
      expect(Date.now() - faultAt).toBeGreaterThanOrEqual(250);
      // A clean close still goes through.
      client.ws.close(1000, 'done');
      expect((await client.closed).code).toBe(1000);
      await waitFor(() => env.app.wss.clients.size === 0, 3000, 'the app side of the WebSocket to close');
      return;
    }
    const closed = await client.closed;
    // The relay ends the public WebSocket with a close frame of its own (it stands between frames): 1011 and the code.
    expect(closed).toMatchObject({ code: 1011, reason: 'BURROW_ERR_AGENT_DISCONNECTED' });
    expect(closed.at - faultAt).toBeLessThan(boundOf(fault));
    // The agent closed the app's side too.
    await waitFor(() => env.app.wss.clients.size === 0, boundOf(fault), 'the app side of the WebSocket to close');
  },

  async 'mid-sse'(env, fault) {
    const get = streamGet(env.relayPort, env.host, '/sse?id=sse');
    await env.app.held('sse');
    await waitFor(() => get.body().toString().includes('data: 3\n\n'), 3000, 'three events at the client');
    expect(get.head()?.headers['content-type']).toBe('text/event-stream');
    expect(get.head()?.headers['transfer-encoding']).toBe('chunked');
    const faultAt = Date.now();
    applyFault(env.proxy, fault);
    if (fault === 'slow') {
      const seen = (
        get
          .body()
          .toString()
          .match(/data: /g) ?? []
      ).length;
      await waitFor(
        () =>
          (
            get
              .body()
              .toString()
              .match(/data: /g) ?? []
          ).length >=
          seen + 5,
        3000,
        'events still flowing on the slow link',
      );
      env.app.release('sse');
      const s = await get.settled;
      expect(s.complete).toBe(true);
      const events = get
        .body()
        .toString()
        .split('\n\n')
        .filter((e) => e !== '');
      expect(events).toEqual(events.map((_, i) => `data: ${i + 1}`));
      return;
    }
    const s = await get.settled;
    // The stream stops without its terminal chunk: the client knows it was cut, not finished.
    expect(s.complete).toBe(false);
    expect(s.at - faultAt).toBeLessThan(boundOf(fault));
    const text = get.body().toString();
    expect(text.startsWith('data: 1\n\ndata: 2\n\ndata: 3\n\n')).toBe(true);
  },
};

async function expectSettled(env: Env, baseline: { sockets: number; timers: number }): Promise<void> {
  await waitFor(
    () => {
      const s = env.relay.stats();
      return s.sessions === 2 && s.activeSessions === 2 && s.ingressStreams === 0 && s.agentStreams === 0;
    },
    SETTLE_MS,
    'relay streams back to 0 and both sessions live',
  );
  // Every socket and timer the fault touched is gone, replaced one for one by the new session's.
  await waitFor(
    () => {
      const now = resources();
      return now.sockets <= baseline.sockets && now.timers <= baseline.timers;
    },
    SETTLE_MS,
    'sockets and timers back to their count before the fault',
  ).catch((err: Error) => {
    throw new Error(`${err.message}: before ${JSON.stringify(baseline)}, now ${JSON.stringify(resources())}`);
  });
  expect(env.relay.stats()).toEqual({ sessions: 2, activeSessions: 2, ingressStreams: 0, agentStreams: 0 });
}

const FAULTS: FaultKind[] = ['cut', 'reset', 'stall', 'slow'];
const MOMENTS: Moment[] = ['idle', 'mid-request', 'mid-response-body', 'mid-websocket', 'mid-sse'];

const outcome = (fault: FaultKind): string =>
  fault === 'slow'
    ? 'traffic completes byte-exact, slower, and the agent stays connected'
    : `the client is answered or visibly cut within ${boundOf(fault)} ms and the agent is back within ${BACK_BOUND_MS} ms`;

const CASES = FAULTS.flatMap((fault) => MOMENTS.map((moment) => [fault, moment, outcome(fault)] as const));

describe('faults between agent and relay', () => {
  test.each(CASES)('%s %s: %s', async (fault, moment) => {
    const env = await setup();
    const original = env.tunnel.url;
    // Baseline with both agents connected and idle.
    await waitFor(() => env.relay.stats().activeSessions === 2, 3000, 'both sessions active');
    const baseline = resources();
    const other = otherTraffic(env);
    await other.ready();
    const back = new Promise<{ url: string; reconnected: boolean; at: number }>((resolve) =>
      env.tunnel.agent.once('online', (e) => resolve({ url: e.url, reconnected: e.reconnected, at: Date.now() })),
    );
    const faultAt = Date.now();

    await moments[moment](env, fault);

    if (fault === 'slow') {
      // The link stayed up all along: no reconnect, no heartbeat timeout.
      expect(env.offlines).toBe(0);
      env.proxy.clear();
    } else {
      const online = await back;
      expect(online.reconnected).toBe(true);
      expect(online.url).toBe(original);
      expect(online.at - faultAt).toBeLessThan(BACK_BOUND_MS);
    }
    const fresh = await request(env.relayPort, env.host, { path: '/ok' });
    expect(`${fresh.status} ${fresh.text}`).toBe('200 ok');
    await other.finish();
    await expectSettled(env, baseline);
  });
});

describe('more faults between agent and relay', () => {
  test('a link so slow that the response head comes after --request-timeout-ms: 504 at the timeout (bound: 400 ms timeout, answered within 1.4 s), then the same link works again', async () => {
    // A long ping interval: this case is about the request timeout, not the heartbeat.
    const env = await setup({ requestTimeoutMs: 400, pingIntervalMs: 5000 });
    await waitFor(() => env.relay.stats().activeSessions === 2, 3000, 'both sessions active');
    // 700 ms per chunk each way: the head cannot be back within 400 ms.
    env.proxy.slow(0, 700);
    const started = Date.now();
    const r = await request(env.relayPort, env.host, { path: '/ok' });
    const ms = Date.now() - started;
    expect(r.status).toBe(504);
    expect(r.headers['x-burrow-error']).toBe('BURROW_ERR_TIMEOUT');
    expect(ms).toBeGreaterThanOrEqual(380);
    expect(ms).toBeLessThan(1400);
    // The second tunnel is unaffected meanwhile.
    expect((await request(env.relayPort, env.otherHost, { path: '/ok' })).text).toBe('ok');
    // The late answer is dropped at the relay; nothing is left routed.
    await waitFor(() => env.relay.stats().agentStreams === 0 && env.relay.stats().ingressStreams === 0, SETTLE_MS, 'streams back to 0');
    env.proxy.clear();
    const again = await request(env.relayPort, env.host, { path: '/ok' });
    expect(`${again.status} ${again.text}`).toBe('200 ok');
    expect(env.offlines).toBe(0);
  });

  test('a blackhole only the relay notices (the agent waits 10 s): the relay declares the agent dead within 1.5 s and lets its socket go at once, not after a 30 s close handshake', async () => {
    const env = await setup({}, { deadAfterMs: 10_000 });
    await waitFor(() => env.relay.stats().activeSessions === 2, 3000, 'both sessions active');
    const offline = new Promise<{ reason: string; at: number }>((resolve) =>
      env.tunnel.agent.once('offline', (e) => resolve({ reason: e.reason, at: Date.now() })),
    );
    const stalledAt = Date.now();
    env.proxy.stall(false);
    const r = await request(env.relayPort, env.host, { path: '/ok' });
    expect(r.headers['x-burrow-error']).toBe('BURROW_ERR_AGENT_DISCONNECTED');
    expect(Date.now() - stalledAt).toBeLessThan(STALL_BOUND_MS);
    // The only way this agent hears of it before its own 10 s is the relay closing the TCP connection.
    const o = await offline;
    expect(o.at - stalledAt).toBeLessThan(STALL_BOUND_MS + 500);
    expect(o.reason).not.toMatch(/no frame from the relay/);
    await waitFor(() => env.relay.stats().activeSessions === 2, BACK_BOUND_MS, 'the agent back');
    expect((await request(env.relayPort, env.host, { path: '/ok' })).text).toBe('ok');
  });

  test('a blackhole that swallows the redials too: each dial gives up on silence and the agent keeps redialling, visitors get 502 TUNNEL_OFFLINE past the grace, and the agent is back within 3 s of heal()', async () => {
    const env = await setup({ reconnectGraceMs: 500 }, { reconnectInitialMs: 50, reconnectMaxMs: 200 });
    await waitFor(() => env.relay.stats().activeSessions === 2, 3000, 'both sessions active');
    const baseline = resources();
    const reasons: string[] = [];
    env.tunnel.agent.on('reconnecting', (e) => reasons.push(e.reason));
    env.proxy.stall(true);
    // The first connection ends on silence (whichever side notices first), each redial on its blackholed handshake.
    await waitFor(() => reasons.length >= 3, 4000, 'three redials');
    expect(reasons[0]).toMatch(/no frame from the relay|connection closed/);
    expect(reasons.slice(1)).toEqual(reasons.slice(1).map(() => expect.stringMatching(/no frame from the relay|handshake has timed out/)));
    expect(env.relay.stats().sessions).toBe(1);
    // The drop, then two silent dials (0.4 s each): well past the 500 ms grace.
    const started = Date.now();
    const r = await request(env.relayPort, env.host, { path: '/ok' });
    expect(r.status).toBe(502);
    expect(r.headers['x-burrow-error']).toBe('BURROW_ERR_TUNNEL_OFFLINE');
    expect(Date.now() - started).toBeLessThan(500);
    const back = new Promise<number>((resolve) => env.tunnel.agent.once('online', () => resolve(Date.now())));
    const healedAt = Date.now();
    env.proxy.heal();
    expect((await back) - healedAt).toBeLessThan(3000);
    expect((await request(env.relayPort, env.host, { path: '/ok' })).text).toBe('ok');
    expect((await request(env.relayPort, env.otherHost, { path: '/ok' })).text).toBe('ok');
    await expectSettled(env, baseline);
  });

  test('the proxy refusing connections: the agent retries with growing, jittered delays (within the documented ranges), visitors get 502 TUNNEL_OFFLINE after the grace, and after accept() the agent is back within 1.5 s', async () => {
    const env = await setup({ reconnectGraceMs: 300 }, { reconnectInitialMs: 100, reconnectMaxMs: 400 });
    await waitFor(() => env.relay.stats().activeSessions === 2, 3000, 'both sessions active');
    const baseline = resources();
    const delays: number[] = [];
    env.tunnel.agent.on('reconnecting', (e) => delays.push(e.delayMs));
    env.proxy.refuse();
    env.proxy.cut();
    await waitFor(() => delays.length >= 5, 5000, 'five redials');
    // Attempt n waits within [base/2, base]: base 50 ms, then 100·2^(n-1) capped at 400.
    const bases = [50, 200, 400, 400, 400];
    delays.slice(0, 5).forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual((bases[i] as number) / 2);
      expect(d).toBeLessThanOrEqual(bases[i] as number);
    });
    // Past the grace the label reads offline: a precise 502 at once, not a wait.
    const started = Date.now();
    const r = await request(env.relayPort, env.host, { path: '/ok' });
    expect(r.status).toBe(502);
    expect(r.headers['x-burrow-error']).toBe('BURROW_ERR_TUNNEL_OFFLINE');
    expect(Date.now() - started).toBeLessThan(1000);
    expect((await request(env.relayPort, env.otherHost, { path: '/ok' })).text).toBe('ok');
    const back = new Promise<number>((resolve) => env.tunnel.agent.once('online', () => resolve(Date.now())));
    const acceptedAt = Date.now();
    env.proxy.accept();
    expect((await back) - acceptedAt).toBeLessThan(1500);
    expect((await request(env.relayPort, env.host, { path: '/ok' })).text).toBe('ok');
    await expectSettled(env, baseline);
  });

  test.each([
    ['the relay handshake answer reset after its first byte', 1, 'reset'],
    ['the HELLO cut in the middle', 200, 'cut'],
  ] as const)(
    'a fault during the agent handshake (%s): the agent retries and is back within 1.5 s; the half-open session leaves nothing behind',
    async (_what, bytes, fault) => {
      const env = await setup({}, { reconnectInitialMs: 50, reconnectMaxMs: 200 });
      await waitFor(() => env.relay.stats().activeSessions === 2, 3000, 'both sessions active');
      const baseline = resources();
      const reasons: string[] = [];
      env.tunnel.agent.on('reconnecting', (e) => reasons.push(e.reason));
      // The next connection (the agent's redial) breaks `bytes` bytes into what the relay sends.
      env.proxy.after(bytes, 'down', fault);
      const back = new Promise<number>((resolve) => env.tunnel.agent.once('online', () => resolve(Date.now())));
      const started = Date.now();
      env.tunnel.agent.dropConnection();
      expect((await back) - started).toBeLessThan(1500);
      // Dropped once by us, once by the proxy during the handshake.
      expect(reasons.length).toBeGreaterThanOrEqual(2);
      expect(env.proxy.totals.connections).toBeGreaterThanOrEqual(3);
      expect((await request(env.relayPort, env.host, { path: '/ok' })).text).toBe('ok');
      await expectSettled(env, baseline);
    },
  );
});
