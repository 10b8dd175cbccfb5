/**
 * Response integrity: a local app built on a raw TCP server answers whatever it likes (bad status
 * lines, injected headers, wrong lengths, early closes, double answers, 1xx) while other requests
 * run on the same agent connection. The public side gets a correct response, a coded 502, or a cut
 * connection (never a truncated body that looks complete, never bytes of another stream), the
 * concurrent responses stay byte-exact, and the tunnel keeps serving.
 */
import net, { type Socket } from 'node:net';
import { cleanup, cleanups, hostOf, request, type StartedRelay, startRelay, startTunnel, waitFor } from '../kit';
import { onRequestHead, type RawExchange, rawExchange, startRawApp } from '../rawHttp';

afterEach(cleanup);

/** What a misbehaving route writes: text (latin1), then 'close' (FIN) or 'reset' (RST) if given. */
type Script = readonly (string | 'close' | 'reset')[];

/** Deterministic body of a good route: its name repeated, so a byte out of place shows whose it is. */
const goodBody = (name: string, size: number): Buffer => Buffer.from(`${name}|`.repeat(Math.ceil(size / (name.length + 1))).slice(0, size), 'latin1');

/** Good routes: answered exactly, one framed by length, one chunked in several writes, one small. */
const GOOD: Record<string, { readonly body: Buffer; readonly chunked: boolean }> = {
  '/good/length': { body: goodBody('good-length', 200_000), chunked: false },
  '/good/chunked': { body: goodBody('good-chunked', 150_000), chunked: true },
  '/good/small': { body: goodBody('good-small', 10), chunked: false },
};

function writeGood(socket: Socket, path: string): void {
  const good = GOOD[path] as { body: Buffer; chunked: boolean };
  if (!good.chunked) {
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${good.body.length}\r\n\r\n`);
    socket.write(good.body);
    return;
  }
  socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
  for (let at = 0; at < good.body.length; at += 40_000) {
    const piece = good.body.subarray(at, at + 40_000);
    socket.write(`${piece.length.toString(16)}\r\n`);
    socket.write(piece);
    socket.write('\r\n');
  }
  socket.write('0\r\n\r\n');
}

/** Runs `script` step by step, each write flushed before the next, so a close really follows the bytes. */
function play(socket: Socket, script: Script): void {
  const [step, ...rest] = script;
  if (step === undefined) return;
  if (step === 'close') socket.end();
  else if (step === 'reset') socket.resetAndDestroy();
  else socket.write(Buffer.from(step, 'latin1'), () => play(socket, rest));
}

/** A raw app: good routes are answered exactly (keep-alive); any other path plays the script for it. */
async function startMisbehavingApp(scripts: () => Record<string, Script>): Promise<{ port: number; connections: () => number }> {
  return startRawApp((socket) => {
    const next = (): void =>
      onRequestHead(socket, (head, rest) => {
        const path = head.split(' ')[1] ?? '';
        if (rest.length > 0) socket.unshift(rest);
        if (path in GOOD) {
          writeGood(socket, path);
          next();
          return;
        }
        play(socket, scripts()[path] ?? ['HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n']);
        next();
      });
    next();
  });
}

/**
 * `<status> <code>` for the relay's own answers, `<status> <body>` (and shown headers) for a complete
 * response from the app, `cut` when no complete response came before the connection closed.
 */
function outcomeOf(x: RawExchange | undefined, show: readonly string[] = []): string {
  if (x === undefined) return 'no answer in time';
  const finals = x.responses.filter((r) => r.status >= 200);
  const r = finals[0];
  if (r === undefined || !r.complete) return 'cut';
  const code = r.headers['x-burrow-error'];
  let line = code !== undefined ? `${r.status} ${code}` : `${r.status} ${JSON.stringify(r.body.toString('latin1'))}`;
  for (const [name, value] of r.rawHeaders) if (show.includes(name.toLowerCase())) line += ` ${name.toLowerCase()}=${value}`;
  if (finals.length > 1 || x.trailing.length > 0) line += ` then more bytes: ${JSON.stringify(x.raw.toString('latin1').slice(-80))}`;
  return line;
}

const streamsIdle = (relay: StartedRelay): boolean => relay.relay.stats().ingressStreams === 0 && relay.relay.stats().agentStreams === 0;

/** [name, what the app writes, the outcome expected, headers to show]. */
type Case = readonly [name: string, script: Script, outcome: string, show?: readonly string[]];

const H = 'HTTP/1.1 ';
const cases: Case[] = [
  // Status lines.
  ['status 999', [`${H}999 X\r\nContent-Length: 5\r\n\r\nhello`], '502 BURROW_ERR_LOCAL_ERROR'],
  ['status 600', [`${H}600 X\r\nContent-Length: 5\r\n\r\nhello`], '502 BURROW_ERR_LOCAL_ERROR'],
  ['status 099', [`${H}099 X\r\nContent-Length: 5\r\n\r\nhello`], '502 BURROW_ERR_LOCAL_ERROR'],
  ['two-digit status', [`${H}20 OK\r\nContent-Length: 5\r\n\r\nhello`], '502 BURROW_ERR_LOCAL_ERROR'],
  ['status not a number', [`${H}abc X\r\nContent-Length: 5\r\n\r\nhello`], '502 BURROW_ERR_LOCAL_ERROR'],
  // Node's parser reads it as HTTP/1.x framing, which it is; the client gets an HTTP/1.1 response.
  ['HTTP/2.0 status line', ['HTTP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nhello'], '200 "hello"'],
  ['no status line', ['Content-Length: 5\r\n\r\nhello'], '502 BURROW_ERR_LOCAL_ERROR'],
  ['text garbage', ['garbage garbage\r\n\r\n'], '502 BURROW_ERR_LOCAL_ERROR'],
  ['binary garbage', ['\x00\x01\x02\xff\xfe'], '502 BURROW_ERR_LOCAL_ERROR'],
  ['a CR inside the reason phrase', [`${H}200 O\rK\r\nContent-Length: 5\r\n\r\nhello`], '502 BURROW_ERR_LOCAL_ERROR'],
  ['101 to a plain request', [`${H}101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nhello`], '502 BURROW_ERR_LOCAL_ERROR'],
  // Nothing usable before the connection ends.
  ['close without a byte', ['close'], '502 BURROW_ERR_LOCAL_UNREACHABLE'],
  ['reset without a byte', ['reset'], '502 BURROW_ERR_LOCAL_UNREACHABLE'],
  ['half a head, then close', [`${H}200 OK\r\nContent-Length: 5\r\n`, 'close'], '502 BURROW_ERR_LOCAL_UNREACHABLE'],
  ['only empty lines, then close', ['\r\n\r\n', 'close'], '502 BURROW_ERR_LOCAL_UNREACHABLE'],
  // Header injection and malformed header lines.
  ['a CR inside a header value', [`${H}200 OK\r\nX-A: a\rX-Injected: 1\r\nContent-Length: 5\r\n\r\nhello`], '502 BURROW_ERR_LOCAL_ERROR'],
  ['a LF inside a header value', [`${H}200 OK\r\nX-A: a\nX-Injected: 1\r\nContent-Length: 5\r\n\r\nhello`], '502 BURROW_ERR_LOCAL_ERROR'],
  ['a NUL inside a header value', [`${H}200 OK\r\nX-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello`], '502 BURROW_ERR_LOCAL_ERROR'],
  ['a header line without a colon', [`${H}200 OK\r\nX-A\r\nContent-Length: 5\r\n\r\nhello`], '502 BURROW_ERR_LOCAL_ERROR'],
  ['obs-fold', [`${H}200 OK\r\nX-A: a\r\n X-Injected: 1\r\nContent-Length: 5\r\n\r\nhello`], '502 BURROW_ERR_LOCAL_ERROR'],
  ['a space before the colon', [`${H}200 OK\r\nContent-Length : 5\r\n\r\nhello`], '502 BURROW_ERR_LOCAL_ERROR'],
  ['a header name with separators', [`${H}200 OK\r\nX(A): b\r\nContent-Length: 5\r\n\r\nhello`], '502 BURROW_ERR_LOCAL_ERROR'],
  ['LF-only line ends', [`${H}200 OK\nContent-Length: 5\n\nhello`], '502 BURROW_ERR_LOCAL_ERROR'],
  ['a 100 KB header', [`${H}200 OK\r\nX-Big: ${'a'.repeat(100_000)}\r\nContent-Length: 5\r\n\r\nhello`], '502 BURROW_ERR_LOCAL_ERROR'],
  // Lengths.
  ['two Content-Lengths, different', [`${H}200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`], '502 BURROW_ERR_LOCAL_ERROR'],
  ['two Content-Lengths, same', [`${H}200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello`], '502 BURROW_ERR_LOCAL_ERROR'],
  [
    'Content-Length and chunked',
    [`${H}200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`],
    '502 BURROW_ERR_LOCAL_ERROR',
  ],
  ['a negative Content-Length', [`${H}200 OK\r\nContent-Length: -5\r\n\r\nhello`], '502 BURROW_ERR_LOCAL_ERROR'],
  ['a Content-Length not a number', [`${H}200 OK\r\nContent-Length: five\r\n\r\nhello`], '502 BURROW_ERR_LOCAL_ERROR'],
  ['Content-Length larger than the body, then close', [`${H}200 OK\r\nContent-Length: 50\r\n\r\nhello`, 'close'], 'cut'],
  ['Content-Length larger than the body, then reset', [`${H}200 OK\r\nContent-Length: 50\r\n\r\nhello`, 'reset'], 'cut'],
  ['a 300 KB body of 500 KB, then reset', [`${H}200 OK\r\nContent-Length: 500000\r\n\r\n`, 'b'.repeat(300_000), 'reset'], 'cut'],
  ['Content-Length smaller than the body', [`${H}200 OK\r\nContent-Length: 3\r\n\r\nhello world`], '200 "hel"'],
  [
    'Content-Length smaller, the rest a second response',
    [`${H}200 OK\r\nContent-Length: 3\r\n\r\nhello${H}200 OK\r\nContent-Length: 4\r\n\r\nEVIL`],
    '200 "hel"',
  ],
  ['two responses to one request', [`${H}200 OK\r\nContent-Length: 5\r\n\r\nhello${H}200 OK\r\nContent-Length: 4\r\n\r\nEVIL`], '200 "hello"'],
  ['two responses, the second written apart', [`${H}200 OK\r\nContent-Length: 5\r\n\r\nhello`, `${H}200 OK\r\nContent-Length: 4\r\n\r\nEVIL`], '200 "hello"'],
  // Chunked bodies.
  ['a chunk size not hex', [`${H}200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`], 'cut'],
  ['a bad chunk size after a good chunk', [`${H}200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`, 'zz\r\nhello\r\n0\r\n\r\n'], 'cut'],
  ['a chunk longer than its size', [`${H}200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n`], 'cut'],
  ['a chunk size over 2^64', [`${H}200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${'f'.repeat(20)}\r\nhello\r\n0\r\n\r\n`], 'cut'],
  ['no last chunk, then close', [`${H}200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`, 'close'], 'cut'],
  ['chunk extensions and a trailer', [`${H}200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n`], '200 "hello"'],
  // Bodies framed by the close.
  ['HTTP/1.0 without a length, ended by the close', ['HTTP/1.0 200 OK\r\n\r\nhello ', 'world', 'close'], '200 "hello world"'],
  ['HTTP/1.1 without a length, ended by the close', [`${H}200 OK\r\nConnection: close\r\n\r\nhello `, 'world', 'close'], '200 "hello world"'],
  // Interim and bodiless responses.
  ['100 Continue, then the response', [`${H}100 Continue\r\n\r\n${H}200 OK\r\nContent-Length: 5\r\n\r\nhello`], '200 "hello"'],
  [
    '103 Early Hints, then the response',
    [`${H}103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n`, `${H}200 OK\r\nContent-Length: 5\r\n\r\nhello`],
    '200 "hello"',
  ],
  ['204 with a body', [`${H}204 No Content\r\nContent-Length: 5\r\n\r\nhello`], '204 ""'],
  ['304 with a body', [`${H}304 Not Modified\r\nContent-Length: 5\r\n\r\nhello`], '304 ""'],
  // Headers that must pass exactly, or not at all.
  [
    'repeated Set-Cookie',
    [`${H}200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 5\r\n\r\nhello`],
    '200 "hello" set-cookie=a=1 set-cookie=b=2',
    ['set-cookie'],
  ],
  [
    'a header named in Connection',
    [`${H}200 OK\r\nConnection: x-secret\r\nX-Secret: s\r\nX-Kept: k\r\nContent-Length: 5\r\n\r\nhello`],
    '200 "hello" x-kept=k',
    ['x-secret', 'x-kept'],
  ],
  [
    '1500 header lines',
    [`${H}200 OK\r\n${Array.from({ length: 1500 }, (_, i) => `X-${i + 1}: v\r\n`).join('')}Content-Length: 5\r\n\r\nhello`],
    '200 "hello" x-1500=v content-length=5',
    ['x-1500', 'content-length'],
  ],
  ['obs-text in a value', [`${H}200 OK\r\nX-A: caf\xe9\r\nContent-Length: 5\r\n\r\nhello`], '200 "hello" x-a=caf\xe9', ['x-a']],
];

describe('a misbehaving local app', () => {
  test(`${cases.length} bad responses: a correct answer, a coded 502 or a cut, while other streams on the agent stay byte-exact`, async () => {
    const scripts: Record<string, Script> = {};
    cases.forEach(([, script], i) => {
      scripts[`/bad/${i}`] = script;
    });
    const app = await startMisbehavingApp(() => scripts);
    const relay = await startRelay({ requestTimeoutMs: 3000 });
    const tunnel = await startTunnel(relay.url, app.port);
    const host = hostOf(tunnel.url);
    const actual: [string, string][] = [];
    const goodFailures: string[] = [];
    for (const [i, [name, script, , show]] of cases.entries()) {
      // The bad request and three good ones at once, all on the one agent connection.
      const [bad, ...goods] = await Promise.all([
        rawExchange(relay.port, `GET /bad/${i} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`, { timeoutMs: 5000 }).catch(() => undefined),
        ...Object.keys(GOOD).map((path) => request(relay.port, host, { path }).catch((err: Error) => err)),
      ]);
      actual.push([name, outcomeOf(bad, show)]);
      // Whatever part of a cut response arrived is the bad route's own bytes.
      const partial = bad?.responses[0];
      if (partial !== undefined && !partial.complete && !script.join('').includes(partial.body.toString('latin1'))) {
        goodFailures.push(`${name}: cut response carries bytes the app did not send for it`);
      }
      Object.keys(GOOD).forEach((path, k) => {
        const r = goods[k];
        if (r instanceof Error) goodFailures.push(`${name}: ${path} failed: ${r.message}`);
        else if (r === undefined || r.status !== 200 || !r.body.equals((GOOD[path] as { body: Buffer }).body))
          goodFailures.push(`${name}: ${path} not byte-exact: ${r?.status} ${JSON.stringify(r?.body.toString('latin1').slice(0, 120))}`);
      });
      await waitFor(() => streamsIdle(relay), 4000, `streams of "${name}" released`);
    }
    expect(actual).toEqual(cases.map(([name, , outcome]) => [name, outcome]));
    expect(goodFailures).toEqual([]);
    const after = await request(relay.port, host, { path: '/good/small' });
    expect(after.body.equals((GOOD['/good/small'] as { body: Buffer }).body)).toBe(true);
    expect(relay.relay.stats().sessions).toBe(1);
  });

  test('a HEAD answered with a body: no body reaches the client, and the next request is not answered with it', async () => {
    const app = await startMisbehavingApp(() => ({ '/head': [`${H}200 OK\r\nContent-Length: 5\r\n\r\nhello`] }));
    const relay = await startRelay();
    const tunnel = await startTunnel(relay.url, app.port);
    const x = await rawExchange(relay.port, `HEAD /head HTTP/1.1\r\nHost: ${hostOf(tunnel.url)}\r\nConnection: close\r\n\r\n`, { methods: ['HEAD'] });
    expect(x.responses.map((r) => [r.status, r.headers['content-length'], r.body.length])).toEqual([[200, '5', 0]]);
    expect(x.trailing.length).toBe(0);
    for (const path of Object.keys(GOOD)) {
      const r = await request(relay.port, hostOf(tunnel.url), { path });
      expect(r.body.equals((GOOD[path] as { body: Buffer }).body)).toBe(true);
    }
  });
});

describe('kept-alive connections to the app', () => {
  test('bytes the app writes on a resting connection close it: their tail never becomes part of the next answer', async () => {
    /** The tail of a stray response, written by the app into the next request's answer on the same connection. */
    const strayTail = 'ngth: 4\r\n\r\nEVIL';
    const strayed = new Set<Socket>();
    let firstSocket: Socket | undefined;
    let firstClosed = false;
    const app = await startRawApp((socket) => {
      const next = (): void =>
        onRequestHead(socket, (head) => {
          const path = head.split(' ')[1] ?? '';
          if (path === '/first') {
            firstSocket = socket;
            socket.on('close', () => {
              firstClosed = true;
            });
          }
          const body = `answer to ${path}`;
          socket.write(`${strayed.has(socket) ? strayTail : ''}HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
          next();
        });
      next();
    });
    const relay = await startRelay();
    const tunnel = await startTunnel(relay.url, app.port);
    const host = hostOf(tunnel.url);
    expect((await request(relay.port, host, { path: '/first' })).text).toBe('answer to /first');
    // The connection rests in the agent's pool; the app writes the start of a second response to it.
    const socket = firstSocket as Socket;
    strayed.add(socket);
    socket.write('HTTP/1.1 200 OK\r\nContent-Le');
    await waitFor(() => firstClosed, 3000, 'the agent to close the connection the app wrote to out of turn');
    const second = await request(relay.port, host, { path: '/second' });
    expect([second.status, second.text]).toEqual([200, 'answer to /second']);
    expect(app.connections()).toBe(2);
  });
});

describe('an app that answers before reading the request body', () => {
  /** A raw client posting `total` bytes of body: `sendBytes` of them, then it stays (or goes, when told). */
  function upload(port: number, host: string, total: number, sendBytes: number): { socket: Socket; got: () => string; closed: () => boolean } {
    const socket = net.connect(port, '127.0.0.1');
    cleanups.push(() => {
      socket.destroy();
    });
    let got = '';
    let closed = false;
    socket.on('data', (c: Buffer) => {
      got += c.toString('latin1');
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      closed = true;
    });
    socket.write(`POST /early HTTP/1.1\r\nHost: ${host}\r\nContent-Length: ${total}\r\n\r\n`);
    socket.write(Buffer.alloc(sendBytes, 'b'));
    return { socket, got: () => got, closed: () => closed };
  }

  async function setUp(readBody: boolean): Promise<{ relay: StartedRelay; host: string; bodyAtApp: () => number; appSawClose: () => boolean }> {
    let bodyBytes = 0;
    let sawClose = false;
    const app = await startRawApp((socket) => {
      socket.on('close', () => {
        sawClose = true;
      });
      onRequestHead(socket, (_head, rest) => {
        bodyBytes += rest.length;
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly');
        if (!readBody) socket.end();
        else
          socket.on('data', (c: Buffer) => {
            bodyBytes += c.length;
          });
      });
    });
    const relay = await startRelay({ maxBodyBytes: 4_000_000, bodyIdleTimeoutMs: 300 });
    const tunnel = await startTunnel(relay.url, app.port);
    return { relay, host: hostOf(tunnel.url), bodyAtApp: () => bodyBytes, appSawClose: () => sawClose };
  }

  const early = /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nearly$/;

  test('the app keeps reading: the client gets the answer, the app the whole body, and the stream ends', async () => {
    const t = await setUp(true);
    const client = upload(t.relay.port, t.host, 2_000_000, 2_000_000);
    await waitFor(() => early.test(client.got()), 3000, 'the early answer');
    await waitFor(() => t.bodyAtApp() === 2_000_000, 5000, 'the whole body at the app');
    await waitFor(() => streamsIdle(t.relay), 3000, 'the stream released');
    expect(client.closed()).toBe(false);
  });

  test('the app closes without reading: the client gets the answer, the rest of the body is dropped, and the stream ends', async () => {
    const t = await setUp(false);
    const client = upload(t.relay.port, t.host, 2_000_000, 2_000_000);
    await waitFor(() => early.test(client.got()), 3000, 'the early answer');
    await waitFor(() => streamsIdle(t.relay), 5000, 'the stream released');
    expect(t.bodyAtApp()).toBeLessThan(2_000_000);
  });

  test('the client leaves after the answer, mid-body: the stream ends and the app sees the connection go', async () => {
    const t = await setUp(true);
    const client = upload(t.relay.port, t.host, 2_000_000, 100_000);
    await waitFor(() => early.test(client.got()), 3000, 'the early answer');
    client.socket.destroy();
    await waitFor(() => streamsIdle(t.relay), 3000, 'the stream released');
    await waitFor(() => t.appSawClose(), 3000, 'the app to see its request cut');
  });

  test('the client stalls mid-body after the answer: cut at --body-idle-timeout-ms, the stream ends', async () => {
    const t = await setUp(true);
    const started = Date.now();
    const client = upload(t.relay.port, t.host, 2_000_000, 100_000);
    await waitFor(() => early.test(client.got()), 3000, 'the early answer');
    await waitFor(() => client.closed(), 3000, 'the relay to close the stalled connection');
    expect(Date.now() - started).toBeLessThan(2500);
    await waitFor(() => streamsIdle(t.relay), 3000, 'the stream released');
    await waitFor(() => t.appSawClose(), 3000, 'the app to see its request cut');
  });
});
