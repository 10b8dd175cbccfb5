/**
 * Hostile bytes at the relay's public port, written raw with node:net: request smuggling (Content-Length
 * and Transfer-Encoding conflicts and obfuscations), requests hidden in bodies, header and CRLF
 * injection, odd request lines, oversized heads and URLs, Host spoofing, relay routes through tunnel
 * hosts, slowloris heads and bodies, and a reader that never drains a large response. Behind the relay
 * sits a tunnel to an app that records exactly what reaches it, so every case checks the relay's exact
 * answer (status and x-burrow-error), everything the app saw (and nothing more), and that the relay
 * keeps serving afterwards.
 */
import net from 'node:net';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { cleanup, cleanups, hostOf, request, type StartedRelay, startApp, startRelay, startTunnel, waitFor, waitUntilSteady } from '../kit';
import { type RawExchange, type RecordingApp, rawExchange, type SeenRequest, startRecordingApp } from '../rawHttp';

afterEach(cleanup);

/** Names a case's bytes may use. */
interface Hosts {
  /** The tunnel's Host: <label>.localhost:<port>. */
  readonly host: string;
  /** The tunnel's host name without port. */
  readonly name: string;
  readonly label: string;
  readonly port: number;
}

/**
 * [name, bytes, the answer(s) expected, what the app must have seen (method, target, body), headers to
 * show of it]. A seen line starting with '?' may be missing: a request the relay began to forward and
 * then cut, whose reset can overtake it at the agent before the app sees it.
 */
type Case = readonly [name: string, bytes: (h: Hosts) => string | Buffer, answer: string, app: readonly string[], show?: readonly string[]];

interface Fixture {
  readonly relay: StartedRelay;
  readonly app: RecordingApp;
  readonly hosts: Hosts;
}

async function fixture(overrides: Parameters<typeof startRelay>[0] = {}): Promise<Fixture> {
  const app = await startRecordingApp();
  const relay = await startRelay({ requestTimeoutMs: 2000, ...overrides });
  const tunnel = await startTunnel(relay.url, app.port);
  const host = hostOf(tunnel.url);
  return { relay, app, hosts: { host, name: host.split(':')[0] as string, label: tunnel.label, port: relay.port } };
}

/**
 * One line per response: `<status> <code>` for the relay's own answers, `<status> app <method> <url>`
 * for the app's (its body names the request it answers), `(cut)` for a body that ended early.
 */
function answerOf(x: RawExchange | undefined): string {
  if (x === undefined) return 'no answer in time';
  const parts = x.responses.map((r) => {
    if (r.status < 200) return String(r.status);
    const code = r.headers['x-burrow-error'];
    const from = code ?? (r.headers['x-app'] === 'yes' ? r.body.toString('latin1') : `uncoded: ${r.body.toString('latin1').split(/\s/).slice(0, 2).join(' ')}`);
    return `${r.status} ${from}${r.complete ? '' : ' (cut)'}`;
  });
  if (x.trailing.length > 0) parts.push(`unparsable ${JSON.stringify(x.trailing.toString('latin1').slice(0, 60))}`);
  return parts.length === 0 ? 'closed without an answer' : parts.join(' | ');
}

/** What the app saw of one request: method, target and body, `aborted` if the body never ended, and the `show` headers. */
function seenOf(s: SeenRequest, show: readonly string[] = []): string {
  let line = `${s.method} ${s.url} ${JSON.stringify(s.body.toString('latin1'))}${s.complete ? '' : ' aborted'}`;
  for (const name of show) line += ` ${name}=${JSON.stringify(s.headers[name] ?? null)}`;
  return line;
}

const streamsIdle = (relay: StartedRelay): boolean => relay.relay.stats().ingressStreams === 0 && relay.relay.stats().agentStreams === 0;

/**
 * Runs every case on its own connection, one after another, and compares the whole table at once (a
 * mismatch shows as a diff naming the case). Each case ends when the relay closes the connection.
 */
async function runTable(f: Fixture, cases: readonly Case[]): Promise<void> {
  const actual: [string, string, string[]][] = [];
  // Optional lines are dropped wherever they show up: a late abort may land in the next case's window.
  const may = cases.flatMap(([, , , app]) => app.filter((line) => line.startsWith('?')).map((line) => line.slice(1)));
  for (const [name, bytes, , app, show] of cases) {
    const before = f.app.seen.length;
    const must = app.filter((line) => !line.startsWith('?'));
    const x = await rawExchange(f.relay.port, bytes(f.hosts), { timeoutMs: 4000 }).catch(() => undefined);
    // Whatever the relay forwarded has ended (answered or reset) before the next case starts.
    await waitFor(() => streamsIdle(f.relay), 4000, `streams of "${name}" released`);
    if (must.length > 0) await waitFor(() => f.app.seen.length >= before + must.length, 2000, `the app to see "${name}"`).catch(() => {});
    const seen = f.app.seen.slice(before).map((s) => seenOf(s, show));
    // Pipelined requests travel as concurrent streams, so the app may finish them in any order (the
    // client's answers, in the same row, must come in order).
    actual.push([name, answerOf(x), seen.filter((line) => !may.includes(line)).sort()]);
  }
  expect(actual).toEqual(cases.map(([name, , answer, app]) => [name, answer, app.filter((line) => !line.startsWith('?')).sort()]));
  // Still serving, on a fresh connection.
  const ok = await request(f.relay.port, f.hosts.host, { path: '/after' });
  expect(ok.text).toBe('app GET /after');
}

const crlf = (...lines: string[]): string => `${lines.join('\r\n')}\r\n`;

describe('request smuggling: Content-Length and Transfer-Encoding', () => {
  // Ambiguous framing never reaches the app: the relay answers 400 and closes.
  const cases: Case[] = [
    [
      'CL and TE together',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Content-Length: 6', 'Transfer-Encoding: chunked', '', '0', '', 'X'),
      '400 BURROW_ERR_BAD_REQUEST',
      [],
    ],
    [
      'TE then CL',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Transfer-Encoding: chunked', 'Content-Length: 3', '', '0', ''),
      '400 BURROW_ERR_BAD_REQUEST',
      [],
    ],
    [
      'TE: chunked, identity (chunked not last)',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Transfer-Encoding: chunked, identity', '', '0', ''),
      '400 BURROW_ERR_BAD_REQUEST',
      [],
    ],
    ['TE: xchunked', (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Transfer-Encoding: xchunked', '', '0', ''), '400 BURROW_ERR_BAD_REQUEST', []],
    ['TE: chunkedx', (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Transfer-Encoding: chunkedx', '', '0', ''), '400 BURROW_ERR_BAD_REQUEST', []],
    ['TE: gzip alone', (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Transfer-Encoding: gzip', '', 'abc'), '400 BURROW_ERR_BAD_REQUEST', []],
    [
      'two TE headers, both chunked',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked', '', '0', ''),
      '400 BURROW_ERR_BAD_REQUEST',
      [],
    ],
    [
      'two TE headers, chunked then identity',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Transfer-Encoding: chunked', 'Transfer-Encoding: identity', '', '0', ''),
      '400 BURROW_ERR_BAD_REQUEST',
      [],
    ],
    [
      'TE name with a space before the colon',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Transfer-Encoding : chunked', '', '0', ''),
      '400 BURROW_ERR_BAD_REQUEST',
      [],
    ],
    [
      'TE value folded onto a second line',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Transfer-Encoding:', ' chunked', '', '0', ''),
      '400 BURROW_ERR_BAD_REQUEST',
      [],
    ],
    [
      'TE in an HTTP/1.0 request',
      (h) => crlf('POST / HTTP/1.0', `Host: ${h.host}`, 'Transfer-Encoding: chunked', '', '3', 'abc', '0', ''),
      '400 BURROW_ERR_BAD_REQUEST',
      [],
    ],
    [
      'two CL headers, same value',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Content-Length: 3', 'Content-Length: 3', '', 'abc'),
      '400 BURROW_ERR_BAD_REQUEST',
      [],
    ],
    [
      'two CL headers, different values',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Content-Length: 3', 'Content-Length: 4', '', 'abcd'),
      '400 BURROW_ERR_BAD_REQUEST',
      [],
    ],
    ['CL as a list', (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Content-Length: 3, 3', '', 'abc'), '400 BURROW_ERR_BAD_REQUEST', []],
    ['CL negative', (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Content-Length: -1', '', 'abc'), '400 BURROW_ERR_BAD_REQUEST', []],
    ['CL with a plus sign', (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Content-Length: +3', '', 'abc'), '400 BURROW_ERR_BAD_REQUEST', []],
    ['CL in hex', (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Content-Length: 0x3', '', 'abc'), '400 BURROW_ERR_BAD_REQUEST', []],
    ['CL not a number', (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Content-Length: abc', '', 'abc'), '400 BURROW_ERR_BAD_REQUEST', []],
    ['CL empty', (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Content-Length: ', '', 'abc'), '400 BURROW_ERR_BAD_REQUEST', []],
    ['CL over 2^64', (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, `Content-Length: ${'9'.repeat(25)}`, '', 'abc'), '400 BURROW_ERR_BAD_REQUEST', []],
    // Parsed, but over --max-body-bytes: refused before a byte of it is forwarded.
    ['CL 2^53+1', (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Content-Length: 9007199254740993', '', 'abc'), '413 BURROW_ERR_REQUEST_TOO_LARGE', []],
    [
      'chunk size not hex',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Transfer-Encoding: chunked', '', 'zz', 'abc', '0', ''),
      '400 BURROW_ERR_BAD_REQUEST',
      [],
    ],
    [
      'chunk size negative',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Transfer-Encoding: chunked', '', '-3', 'abc', '0', ''),
      '400 BURROW_ERR_BAD_REQUEST',
      [],
    ],
    [
      'chunk size over 2^64',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Transfer-Encoding: chunked', '', 'f'.repeat(20), 'abc', '0', ''),
      '400 BURROW_ERR_BAD_REQUEST',
      [],
    ],
    [
      'chunk size with a space before it',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Transfer-Encoding: chunked', '', ' 3', 'abc', '0', ''),
      '400 BURROW_ERR_BAD_REQUEST',
      [],
    ],
    [
      'chunk lines ending in LF only',
      (h) => `POST / HTTP/1.1\r\nHost: ${h.host}\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n`,
      '400 BURROW_ERR_BAD_REQUEST',
      [],
    ],
    // The first chunk was forwarded before the bad one was read: the app may see that much, then the abort.
    [
      'chunk longer than its size',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Transfer-Encoding: chunked', '', '3', 'abcdef', '0', ''),
      '400 BURROW_ERR_BAD_REQUEST',
      ['?POST / "abc" aborted'],
    ],
    // Accepted framings: what the app gets is the body the relay read, re-framed.
    [
      'TE: identity, chunked',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Transfer-Encoding: identity, chunked', 'Connection: close', '', '3', 'abc', '0', ''),
      '200 app POST /',
      ['POST / "abc"'],
    ],
    [
      'TE: CHUNKED (case)',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Transfer-Encoding: CHUNKED', 'Connection: close', '', '3', 'abc', '0', ''),
      '200 app POST /',
      ['POST / "abc"'],
    ],
    [
      'TE with a tab before chunked',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Transfer-Encoding:\tchunked', 'Connection: close', '', '3', 'abc', '0', ''),
      '200 app POST /',
      ['POST / "abc"'],
    ],
    [
      'chunk extensions',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Transfer-Encoding: chunked', 'Connection: close', '', '3;ext="x"', 'abc', '0;last', ''),
      '200 app POST /',
      ['POST / "abc"'],
    ],
    [
      'chunked with a trailer',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Transfer-Encoding: chunked', 'Connection: close', '', '3', 'abc', '0', 'X-Trailer: 1', ''),
      '200 app POST /',
      ['POST / "abc"'],
    ],
    [
      'CL with leading zeros',
      (h) => crlf('POST / HTTP/1.1', `Host: ${h.host}`, 'Content-Length: 003', 'Connection: close', '', 'abc'),
      '200 app POST /',
      ['POST / "abc"'],
    ],
  ];
  test(`${cases.length} framings: ambiguous ones get 400 and never reach the app`, async () => {
    await runTable(await fixture(), cases);
  });
});

describe('requests hidden in bodies and pipelines', () => {
  const smuggled = 'GET /smuggled HTTP/1.1\r\nX: y\r\n\r\n';
  // The app sees exactly the requests the relay read and routed, in order, each answered once.
  const cases: Case[] = [
    [
      'a request inside a Content-Length body',
      (h) =>
        `POST / HTTP/1.1\r\nHost: ${h.host}\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}GET /next HTTP/1.1\r\nHost: ${h.host}\r\nConnection: close\r\n\r\n`,
      '200 app POST / | 200 app GET /next',
      [`POST / ${JSON.stringify(smuggled)}`, 'GET /next ""'],
    ],
    [
      'a request inside a chunk',
      (h) =>
        `POST / HTTP/1.1\r\nHost: ${h.host}\r\nTransfer-Encoding: chunked\r\n\r\n${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: ${h.host}\r\nConnection: close\r\n\r\n`,
      '200 app POST / | 200 app GET /next',
      [`POST / ${JSON.stringify(smuggled)}`, 'GET /next ""'],
    ],
    [
      'a GET with a body that is a request',
      (h) => `GET /a HTTP/1.1\r\nHost: ${h.host}\r\nContent-Length: ${smuggled.length}\r\nConnection: close\r\n\r\n${smuggled}`,
      '200 app GET /a',
      [`GET /a ${JSON.stringify(smuggled)}`],
    ],
    [
      'Content-Length: 0 then a request: the relay routes it as the next request',
      (h) => `POST /a HTTP/1.1\r\nHost: ${h.host}\r\nContent-Length: 0\r\n\r\nGET /b HTTP/1.1\r\nHost: ${h.host}\r\nConnection: close\r\n\r\n`,
      '200 app POST /a | 200 app GET /b',
      ['POST /a ""', 'GET /b ""'],
    ],
    [
      'a body ended early by its length, the rest a request without Host',
      (h) => `POST /a HTTP/1.1\r\nHost: ${h.host}\r\nContent-Length: 5\r\n\r\nhello${smuggled}`,
      '200 app POST /a | 400 BURROW_ERR_BAD_REQUEST',
      ['POST /a "hello"'],
    ],
    [
      'a chunked body ended at once, the rest a request for another host',
      (h) =>
        `POST /a HTTP/1.1\r\nHost: ${h.host}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`,
      '200 app POST /a | 404 BURROW_ERR_NOT_FOUND',
      ['POST /a ""'],
    ],
    [
      'three pipelined requests in one write',
      (h) =>
        `GET /1 HTTP/1.1\r\nHost: ${h.host}\r\n\r\nPOST /2 HTTP/1.1\r\nHost: ${h.host}\r\nContent-Length: 2\r\n\r\nokGET /3 HTTP/1.1\r\nHost: ${h.host}\r\nConnection: close\r\n\r\n`,
      '200 app GET /1 | 200 app POST /2 | 200 app GET /3',
      ['GET /1 ""', 'POST /2 "ok"', 'GET /3 ""'],
    ],
    [
      'a pipelined request after a refused one is never read',
      (h) => `GET /1 HTTP/1.1\r\nHost: ${h.host}\r\nHost: ${h.host}\r\n\r\nGET /2 HTTP/1.1\r\nHost: ${h.host}\r\n\r\n`,
      '400 BURROW_ERR_BAD_REQUEST',
      [],
    ],
    [
      'a request that asks to close, then another: the second is not processed',
      (h) => `GET /a HTTP/1.1\r\nHost: ${h.host}\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: ${h.host}\r\n\r\n`,
      '200 app GET /a',
      ['GET /a ""'],
    ],
    [
      'garbage pipelined after a good request: its answer first, then the 400',
      (h) => `GET /a HTTP/1.1\r\nHost: ${h.host}\r\n\r\nGARBAGE\r\n\r\n`,
      '200 app GET /a | 400 BURROW_ERR_BAD_REQUEST',
      ['GET /a ""'],
    ],
    [
      'an injected header pipelined after two good requests',
      (h) => `GET /a HTTP/1.1\r\nHost: ${h.host}\r\n\r\nGET /b HTTP/1.1\r\nHost: ${h.host}\r\n\r\nGET /c HTTP/1.1\r\nHost: ${h.host}\r\nX: a\rb\r\n\r\n`,
      '200 app GET /a | 200 app GET /b | 400 BURROW_ERR_BAD_REQUEST',
      ['GET /a ""', 'GET /b ""'],
    ],
    [
      'Expect: 100-continue, then the body',
      (h) => `POST / HTTP/1.1\r\nHost: ${h.host}\r\nExpect: 100-continue\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc`,
      '100 | 200 app POST /',
      ['POST / "abc"'],
    ],
    [
      'an expectation other than 100-continue',
      (h) => `POST / HTTP/1.1\r\nHost: ${h.host}\r\nExpect: 200-ok\r\nContent-Length: 3\r\n\r\nabc`,
      '417 BURROW_ERR_EXPECTATION_FAILED',
      [],
    ],
  ];
  test(`${cases.length} cases: the app sees exactly the requests the relay routed`, async () => {
    await runTable(await fixture(), cases);
  });
});

describe('header and CRLF injection', () => {
  const get = (h: Hosts, ...headers: string[]): string =>
    `GET / HTTP/1.1\r\nHost: ${h.host}\r\n${headers.map((x) => `${x}\r\n`).join('')}Connection: close\r\n\r\n`;
  const cases: Case[] = [
    ['NUL in a header value', (h) => get(h, 'X-A: a\x00b'), '400 BURROW_ERR_BAD_REQUEST', []],
    ['CR alone in a header value', (h) => get(h, 'X-A: a\rX-Injected: 1'), '400 BURROW_ERR_BAD_REQUEST', []],
    ['LF alone in a header value', (h) => get(h, 'X-A: a\nX-Injected: 1'), '400 BURROW_ERR_BAD_REQUEST', []],
    ['DEL in a header value', (h) => get(h, 'X-A: a\x7fb'), '400 BURROW_ERR_BAD_REQUEST', []],
    ['a control character in a header value', (h) => get(h, 'X-A: a\x01b'), '400 BURROW_ERR_BAD_REQUEST', []],
    ['NUL in a header name', (h) => get(h, 'X\x00A: b'), '400 BURROW_ERR_BAD_REQUEST', []],
    ['a space in a header name', (h) => get(h, 'X A: b'), '400 BURROW_ERR_BAD_REQUEST', []],
    ['a header name with separators', (h) => get(h, 'X(A): b'), '400 BURROW_ERR_BAD_REQUEST', []],
    ['an empty header name', (h) => get(h, ': b'), '400 BURROW_ERR_BAD_REQUEST', []],
    ['a header line without a colon', (h) => get(h, 'X-A b'), '400 BURROW_ERR_BAD_REQUEST', []],
    ['obs-fold (a continuation line)', (h) => get(h, 'X-A: a', ' X-Injected: 1'), '400 BURROW_ERR_BAD_REQUEST', []],
    ['a head with LF-only line ends', (h) => `GET / HTTP/1.1\nHost: ${h.host}\nConnection: close\n\n`, '400 BURROW_ERR_BAD_REQUEST', []],
    ['a bare CR ending the request line', (h) => `GET / HTTP/1.1\rHost: ${h.host}\r\nConnection: close\r\n\r\n`, '400 BURROW_ERR_BAD_REQUEST', []],
    [
      'a header line starting with a space after the request line',
      (h) => `GET / HTTP/1.1\r\n X-A: b\r\nHost: ${h.host}\r\nConnection: close\r\n\r\n`,
      '400 BURROW_ERR_BAD_REQUEST',
      [],
    ],
    // Allowed bytes pass through exactly (the app's Node keeps them as latin1).
    ['a tab and obs-text in a value', (h) => get(h, 'X-A: a\tb\xe9'), '200 app GET /', ['GET / "" x-a="a\\tbé"'], ['x-a']],
    // Encoded CR LF in the target stay encoded: no header appears at the app.
    [
      '%0d%0a in the target',
      (h) => get(h).replace('GET / ', 'GET /a%0d%0aX-A:%20injected '),
      '200 app GET /a%0d%0aX-A:%20injected',
      ['GET /a%0d%0aX-A:%20injected "" x-a=null'],
      ['x-a'],
    ],
    // Hop-by-hop headers and the ones the relay sets itself are not the client's to pass on.
    [
      'headers listed in Connection',
      (h) => get(h, 'X-A: secret').replace('Connection: close', 'Connection: close, X-A'),
      '200 app GET /',
      ['GET / "" x-a=null'],
      ['x-a'],
    ],
    [
      'spoofed X-Forwarded-Host and -Proto',
      (h) => get(h, 'X-Forwarded-Host: evil.example', 'X-Forwarded-Proto: https'),
      '200 app GET /',
      ['GET / "" x-forwarded-host="<tunnel>" x-forwarded-proto="http"'],
      ['x-forwarded-host', 'x-forwarded-proto'],
    ],
  ];
  test(`${cases.length} injections: refused with 400, or passed on exactly`, async () => {
    const f = await fixture();
    // The tunnel host is random; the table names it <tunnel>.
    const table = cases.map(([name, bytes, answer, app, show]): Case => [name, bytes, answer, app.map((line) => line.replace('<tunnel>', f.hosts.host)), show]);
    await runTable(f, table);
  });
});

describe('request lines: methods, versions and targets', () => {
  const cases: Case[] = [
    ['a method with a non-token character', (h) => crlf('G@T / HTTP/1.1', `Host: ${h.host}`, ''), '400 BURROW_ERR_BAD_REQUEST', []],
    ['an unknown method', (h) => crlf('FOO / HTTP/1.1', `Host: ${h.host}`, ''), '400 BURROW_ERR_BAD_REQUEST', []],
    ['a lower-case method', (h) => crlf('get / HTTP/1.1', `Host: ${h.host}`, ''), '400 BURROW_ERR_BAD_REQUEST', []],
    ['a 300-byte method', (h) => crlf(`${'A'.repeat(300)} / HTTP/1.1`, `Host: ${h.host}`, ''), '400 BURROW_ERR_BAD_REQUEST', []],
    // Node's parser tolerates it; the agent sends the request on with a single space.
    ['two spaces after the method', (h) => crlf('GET  / HTTP/1.1', `Host: ${h.host}`, 'Connection: close', ''), '200 app GET /', ['GET / ""']],
    ['a lower-case protocol name', (h) => crlf('GET / http/1.1', `Host: ${h.host}`, ''), '400 BURROW_ERR_BAD_REQUEST', []],
    ['HTTP/1.2', (h) => crlf('GET / HTTP/1.2', `Host: ${h.host}`, ''), '400 BURROW_ERR_BAD_REQUEST', []],
    ['HTTP/2.0 in a text request line', (h) => crlf('GET / HTTP/2.0', `Host: ${h.host}`, ''), '400 BURROW_ERR_BAD_REQUEST', []],
    ['HTTP/9.9', (h) => crlf('GET / HTTP/9.9', `Host: ${h.host}`, ''), '400 BURROW_ERR_BAD_REQUEST', []],
    ['the HTTP/2 connection preface', () => 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', '400 BURROW_ERR_BAD_REQUEST', []],
    ['HTTP/0.9 (no version)', () => 'GET /\r\n\r\n', '400 BURROW_ERR_BAD_REQUEST', []],
    ['binary garbage', () => Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03]), '400 BURROW_ERR_BAD_REQUEST', []],
    ['CONNECT to another host', (h) => crlf('CONNECT evil.example:443 HTTP/1.1', `Host: ${h.host}`, ''), '400 BURROW_ERR_BAD_REQUEST', []],
    ['a target without a leading slash', (h) => crlf('GET foo HTTP/1.1', `Host: ${h.host}`, ''), '400 BURROW_ERR_BAD_REQUEST', []],
    ['a space inside the target', (h) => crlf('GET /a b HTTP/1.1', `Host: ${h.host}`, ''), '400 BURROW_ERR_BAD_REQUEST', []],
    ['a control character in the target', (h) => crlf('GET /a\x01b HTTP/1.1', `Host: ${h.host}`, ''), '400 BURROW_ERR_BAD_REQUEST', []],
    ['raw UTF-8 in the target', (h) => crlf('GET /\xc3\xa9 HTTP/1.1', `Host: ${h.host}`, ''), '400 BURROW_ERR_BAD_REQUEST', []],
    ['"*" with GET', (h) => crlf('GET * HTTP/1.1', `Host: ${h.host}`, ''), '400 BURROW_ERR_BAD_REQUEST', []],
    ['absolute form naming another host', (h) => crlf('GET http://evil.example/x HTTP/1.1', `Host: ${h.host}`, ''), '400 BURROW_ERR_BAD_REQUEST', []],
    [
      'absolute form naming the tunnel, Host the apex',
      (h) => crlf(`GET http://${h.host}/x HTTP/1.1`, `Host: localhost:${h.port}`, ''),
      '400 BURROW_ERR_BAD_REQUEST',
      [],
    ],
    ['absolute form with user information', (h) => crlf(`GET http://me@${h.host}/x HTTP/1.1`, `Host: ${h.host}`, ''), '400 BURROW_ERR_BAD_REQUEST', []],
    ['absolute form with another scheme', (h) => crlf(`GET ftp://${h.host}/x HTTP/1.1`, `Host: ${h.host}`, ''), '400 BURROW_ERR_BAD_REQUEST', []],
    // Accepted: the app gets origin-form, never a URL.
    [
      'absolute form naming the tunnel',
      (h) => crlf(`GET http://${h.host}/x?q=1 HTTP/1.1`, `Host: ${h.host}`, 'Connection: close', ''),
      '200 app GET /x?q=1',
      ['GET /x?q=1 ""'],
    ],
    [
      'absolute form in capitals, no path',
      (h) => crlf(`GET HTTP://${h.host.toUpperCase()} HTTP/1.1`, `Host: ${h.host}`, 'Connection: close', ''),
      '200 app GET /',
      ['GET / ""'],
    ],
    ['"*" with OPTIONS', (h) => crlf('OPTIONS * HTTP/1.1', `Host: ${h.host}`, 'Connection: close', ''), '200 app OPTIONS *', ['OPTIONS * ""']],
    ['a WebDAV method', (h) => crlf('PROPFIND /d HTTP/1.1', `Host: ${h.host}`, 'Connection: close', ''), '200 app PROPFIND /d', ['PROPFIND /d ""']],
    [
      'HTTP/1.0 (closes after one request)',
      (h) => crlf('GET /a HTTP/1.0', `Host: ${h.host}`, '', 'GET /b HTTP/1.0', `Host: ${h.host}`, ''),
      '200 app GET /a',
      ['GET /a ""'],
    ],
    [
      'empty lines before the request line',
      (h) => `\r\n\r\n${crlf('GET / HTTP/1.1', `Host: ${h.host}`, 'Connection: close', '')}`,
      '200 app GET /',
      ['GET / ""'],
    ],
    ['a fragment in the target', (h) => crlf('GET /a#frag HTTP/1.1', `Host: ${h.host}`, 'Connection: close', ''), '200 app GET /a#frag', ['GET /a#frag ""']],
  ];
  test(`${cases.length} request lines: refused with 400, or passed on in origin-form`, async () => {
    await runTable(await fixture(), cases);
  });
});

describe('oversized heads and URLs', () => {
  const cases: Case[] = [
    ['a 10 KB URL', (h) => crlf(`GET /${'a'.repeat(10_000)} HTTP/1.1`, `Host: ${h.host}`, ''), '414 BURROW_ERR_URL_TOO_LARGE', []],
    [
      'a 10 KB absolute-form URL',
      (h) => crlf(`GET http://${h.host}/${'a'.repeat(10_000)} HTTP/1.1`, `Host: ${h.host}`, ''),
      '414 BURROW_ERR_URL_TOO_LARGE',
      [],
    ],
    [
      'a 10 KB URL in an upgrade',
      (h) => crlf(`GET /${'a'.repeat(10_000)} HTTP/1.1`, `Host: ${h.host}`, 'Connection: Upgrade', 'Upgrade: websocket', ''),
      '414 BURROW_ERR_URL_TOO_LARGE',
      [],
    ],
    [
      'a 20 KB URL (over the whole-head limit)',
      (h) => crlf(`GET /${'a'.repeat(20_000)} HTTP/1.1`, `Host: ${h.host}`, ''),
      '431 BURROW_ERR_HEADERS_TOO_LARGE',
      [],
    ],
    ['a 20 KB header', (h) => crlf('GET / HTTP/1.1', `Host: ${h.host}`, `X-Big: ${'a'.repeat(20_000)}`, ''), '431 BURROW_ERR_HEADERS_TOO_LARGE', []],
    [
      '3000 small headers',
      (h) => crlf('GET / HTTP/1.1', `Host: ${h.host}`, ...Array.from({ length: 3000 }, (_, i) => `X-${i}: v`), ''),
      '431 BURROW_ERR_HEADERS_TOO_LARGE',
      [],
    ],
    ['a 20 KB header name', (h) => crlf('GET / HTTP/1.1', `Host: ${h.host}`, `X-${'n'.repeat(20_000)}: v`, ''), '431 BURROW_ERR_HEADERS_TOO_LARGE', []],
    [
      'a 100 KB head of many lines, sent at once',
      (h) => crlf('GET / HTTP/1.1', `Host: ${h.host}`, ...Array.from({ length: 1000 }, (_, i) => `X-${i}: ${'v'.repeat(100)}`), ''),
      '431 BURROW_ERR_HEADERS_TOO_LARGE',
      [],
    ],
    // Just inside both limits: served.
    [
      'an 8 KB URL',
      (h) => crlf(`GET /${'a'.repeat(8000)} HTTP/1.1`, `Host: ${h.host}`, 'Connection: close', ''),
      `200 app GET /${'a'.repeat(8000)}`,
      [`GET /${'a'.repeat(8000)} ""`],
    ],
    ['a 12 KB header', (h) => crlf('GET / HTTP/1.1', `Host: ${h.host}`, `X-A: ${'a'.repeat(12_000)}`, 'Connection: close', ''), '200 app GET /', ['GET / ""']],
  ];
  test(`${cases.length} sizes: 414 for a long URL, 431 for a large head, nothing forwarded`, async () => {
    await runTable(await fixture(), cases);
  });
});

describe('Host spoofing', () => {
  const get = (host: string | undefined, extra = ''): string =>
    `GET /h HTTP/1.1\r\n${host === undefined ? '' : `Host: ${host}\r\n`}${extra}Connection: close\r\n\r\n`;
  const cases: Case[] = [
    ['the tunnel host', (h) => get(h.host), '200 app GET /h', ['GET /h ""']],
    ['upper-case label', (h) => get(h.host.toUpperCase()), '200 app GET /h', ['GET /h ""']],
    ['a trailing dot', (h) => get(`${h.name}.:${h.port}`), '200 app GET /h', ['GET /h ""']],
    ['no port', (h) => get(h.name), '200 app GET /h', ['GET /h ""']],
    ['another port', (h) => get(`${h.name}:1`), '200 app GET /h', ['GET /h ""']],
    ['no Host at all (HTTP/1.1)', () => get(undefined), '400 BURROW_ERR_BAD_REQUEST', []],
    ['two Host headers, tunnel first', (h) => get(h.host, `Host: localhost:${h.port}\r\n`), '400 BURROW_ERR_BAD_REQUEST', []],
    ['two Host headers, tunnel last', (h) => get(`localhost:${h.port}`, `Host: ${h.host}\r\n`), '400 BURROW_ERR_BAD_REQUEST', []],
    ['the same Host twice', (h) => get(h.host, `Host: ${h.host}\r\n`), '400 BURROW_ERR_BAD_REQUEST', []],
    ['a Host with user information', (h) => get(`me@${h.host}`), '400 BURROW_ERR_BAD_REQUEST', []],
    ['a Host with a space and more', (h) => get(`${h.host} evil.example`), '400 BURROW_ERR_BAD_REQUEST', []],
    ['a Host with a path', (h) => get(`${h.host}/x`), '400 BURROW_ERR_BAD_REQUEST', []],
    ['a Host with a non-numeric port', (h) => get(`${h.name}:80x`), '400 BURROW_ERR_BAD_REQUEST', []],
    ['a Host with a comma list', (h) => get(`${h.host}, localhost`), '400 BURROW_ERR_BAD_REQUEST', []],
    // Not a tunnel: the apex serves only the relay's own routes, so the app sees nothing.
    ['an empty Host', () => get(''), '404 BURROW_ERR_NOT_FOUND', []],
    ['the apex host', (h) => get(`localhost:${h.port}`), '404 BURROW_ERR_NOT_FOUND', []],
    ['an IPv4 literal', (h) => get(`127.0.0.1:${h.port}`), '404 BURROW_ERR_NOT_FOUND', []],
    ['an IPv6 literal', (h) => get(`[::1]:${h.port}`), '404 BURROW_ERR_NOT_FOUND', []],
    ['the tunnel name under another domain', (h) => get(`${h.name}.evil.example`), '404 BURROW_ERR_NOT_FOUND', []],
    ['the label alone', (h) => get(h.label), '404 BURROW_ERR_NOT_FOUND', []],
    ['the label with the domain as a prefix', (h) => get(`localhost.${h.label}`), '404 BURROW_ERR_NOT_FOUND', []],
    ['the apex page through an IPv4 Host', (h) => `GET / HTTP/1.1\r\nHost: 127.0.0.1:${h.port}\r\nConnection: close\r\n\r\n`, '200 uncoded: burrow relay', []],
    // Under the domain but no valid label.
    ['two labels under the domain', (h) => get(`x.${h.name}`), '404 BURROW_ERR_UNKNOWN_TUNNEL', []],
    ['a label with an underscore', (h) => get(`a_b.localhost:${h.port}`), '404 BURROW_ERR_UNKNOWN_TUNNEL', []],
    ['an unknown label', (h) => get(`nosuchtunnel.localhost:${h.port}`), '404 BURROW_ERR_UNKNOWN_TUNNEL', []],
  ];
  test(`${cases.length} Host values: only <label>.<domain> reaches the app`, async () => {
    await runTable(await fixture(), cases);
  });
});

describe("the relay's routes through a tunnel host", () => {
  // Control routes never shadow tunnel paths: on a tunnel host every path is the app's.
  const paths = [
    '/_burrow/connect',
    '/_burrow/health',
    '/_burrow/connect?x=1',
    '//_burrow/connect',
    '/%2e%2e/_burrow/connect',
    '/../_burrow/connect',
    '/healthz',
    '/readyz',
    '/version',
    '/metrics',
    '/v1/tenants',
    '/v1/tunnels/x/disconnect',
    '/t/otherlabel/x',
    '/t/nosuchtunnel',
    '/',
  ];
  const cases: Case[] = paths.map(
    (path): Case => [path, (h) => crlf(`GET ${path} HTTP/1.1`, `Host: ${h.host}`, 'Connection: close', ''), `200 app GET ${path}`, [`GET ${path} ""`]],
  );
  cases.push([
    'POST /_burrow/connect with a body',
    (h) => `${crlf('POST /_burrow/connect HTTP/1.1', `Host: ${h.host}`, 'Content-Length: 1', 'Connection: close', '')}x`,
    '200 app POST /_burrow/connect',
    ['POST /_burrow/connect "x"'],
  ]);
  test(`${cases.length} relay paths on a tunnel host reach the tunnel's app (path routing on)`, async () => {
    const f = await fixture({ pathRouting: true });
    await runTable(f, cases);
    expect(f.relay.relay.stats().sessions).toBe(1);
  });

  test('an upgrade to /_burrow/connect on a tunnel host is carried to the app, never to the agent endpoint', async () => {
    const f = await fixture();
    const socket = net.connect(f.relay.port, '127.0.0.1');
    cleanups.push(() => {
      socket.destroy();
    });
    let got = '';
    socket.on('data', (c: Buffer) => {
      got += c.toString('latin1');
    });
    socket.write(
      crlf(
        'GET /_burrow/connect HTTP/1.1',
        `Host: ${f.hosts.host}`,
        'Connection: Upgrade',
        'Upgrade: websocket',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Version: 13',
        '',
      ),
    );
    await waitFor(() => got.includes('\r\n\r\n'), 3000, 'the handshake answer');
    // The app's own answer (its x-app header), not the relay's agent endpoint (which would send a HELLO frame).
    expect(got).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    expect(got).toContain('x-app: yes');
    expect(f.app.upgrades.map((u) => u.url)).toEqual(['/_burrow/connect']);
    // Raw bytes go through to the app's echo, byte-exact.
    const after = got.length;
    socket.write(Buffer.from('\x00\xffping', 'latin1'));
    await waitFor(() => got.length >= after + 6, 3000, 'the echo');
    expect(got.slice(after)).toBe('\x00\xffping');
    expect(f.relay.relay.stats().sessions).toBe(1);
  });
});

/** Writes the first piece at once, then one every `everyMs` until they run out or the relay closes; resolves with the answer, when it closed, and how many pieces went out. */
function dribble(port: number, pieces: readonly string[], everyMs: number): Promise<{ answer: string; closedAfterMs: number; sent: number }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    cleanups.push(() => {
      socket.destroy();
    });
    const started = Date.now();
    let got = '';
    let sent = 0;
    const next = (): void => {
      if (sent < pieces.length && socket.writable) socket.write(Buffer.from(pieces[sent++] as string, 'latin1'));
    };
    socket.on('connect', next);
    const timer = setInterval(next, everyMs);
    socket.on('data', (c: Buffer) => {
      got += c.toString('latin1');
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearInterval(timer);
      const r = parseAnswer(got);
      resolve({ answer: r, closedAfterMs: Date.now() - started, sent });
    });
  });
}

function parseAnswer(raw: string): string {
  const status = /^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1];
  const code = /x-burrow-error: (\S+)/i.exec(raw)?.[1];
  return status === undefined ? 'closed without an answer' : `${status} ${code ?? 'uncoded'}`;
}

describe('slowloris', () => {
  test('a head dribbled a byte at a time is cut at --headers-timeout-ms with 408, nothing forwarded', async () => {
    const f = await fixture({ headersTimeoutMs: 300 });
    const head = crlf('GET /slow HTTP/1.1', `Host: ${f.hosts.host}`, `X-Padding: ${'a'.repeat(80)}`, '');
    // At 20 ms a byte the head would take about 3 s: the deadline comes first.
    const r = await dribble(f.relay.port, [...head], 20);
    expect(r.answer).toBe('408 BURROW_ERR_CLIENT_TIMEOUT');
    expect(r.sent).toBeLessThan(head.length);
    // Node looks for late heads every 75 ms here.
    expect(r.closedAfterMs).toBeGreaterThanOrEqual(250);
    expect(r.closedAfterMs).toBeLessThan(2000);
    expect(f.app.seen).toEqual([]);
    const ok = await request(f.relay.port, f.hosts.host, { path: '/after' });
    expect(ok.text).toBe('app GET /after');
  });

  test('a connection that sends half a request line and stops, or nothing at all, is closed with 408 too', async () => {
    const f = await fixture({ headersTimeoutMs: 300 });
    const [half, nothing] = await Promise.all([dribble(f.relay.port, ['GET /'], 1000), dribble(f.relay.port, [], 1000)]);
    expect(half.answer).toBe('408 BURROW_ERR_CLIENT_TIMEOUT');
    expect(half.closedAfterMs).toBeLessThan(2000);
    expect(nothing.answer).toBe('408 BURROW_ERR_CLIENT_TIMEOUT');
    expect(nothing.closedAfterMs).toBeLessThan(2000);
    expect(f.app.seen).toEqual([]);
  });

  test.each([
    ['Content-Length', 'Content-Length: 100'],
    ['chunked', 'Transfer-Encoding: chunked'],
  ])('a %s body that stops arriving is cut at --body-idle-timeout-ms with 408, and the app sees the abort', async (_kind, framing) => {
    const f = await fixture({ bodyIdleTimeoutMs: 200 });
    const head = crlf('POST /upload HTTP/1.1', `Host: ${f.hosts.host}`, framing, '');
    const first = framing.startsWith('Content') ? 'abc' : '3\r\nabc\r\n';
    // The head and the first bytes at once; then a byte every 400 ms, twice the idle limit.
    const r = await dribble(f.relay.port, [head + first, ...'defghijkl'], 400);
    expect(r.answer).toBe('408 BURROW_ERR_CLIENT_TIMEOUT');
    // Cut in the first gap: the relay's timer (same event loop) expires before the next byte is due.
    expect(r.sent).toBeLessThanOrEqual(2);
    expect(r.closedAfterMs).toBeLessThan(2000);
    await waitFor(() => f.app.seen.length === 1, 3000, 'the app to see the abort');
    expect(seenOf(f.app.seen[0] as SeenRequest)).toBe('POST /upload "abc" aborted');
    await waitFor(() => streamsIdle(f.relay), 3000, 'streams released');
    const ok = await request(f.relay.port, f.hosts.host, { path: '/after' });
    expect(ok.text).toBe('app GET /after');
  });

  test('a body the relay holds back (the app is not reading) is not the client idling', async () => {
    let release: (() => void) | undefined;
    let received = 0;
    const { port: appPort } = await startApp((req, res) => {
      // Reads nothing until told to: the stream window fills and the relay stops reading the client.
      req.pause();
      release = () => {
        req.on('data', (c: Buffer) => {
          received += c.length;
        });
        req.on('end', () => res.end(`got ${received}`));
        req.resume();
      };
    });
    const relay = await startRelay({ bodyIdleTimeoutMs: 200, maxBodyBytes: 8_000_000 });
    const tunnel = await startTunnel(relay.url, appPort);
    const body = Buffer.alloc(4_000_000, 7);
    const pending = request(relay.port, hostOf(tunnel.url), { method: 'POST', body });
    await waitFor(() => release !== undefined, 3000, 'the request at the app');
    // The client has sent all it can: backpressure holds the rest for longer than the idle limit.
    const started = Date.now();
    await waitFor(() => Date.now() - started >= 1000, 2000, 'five idle limits to pass');
    expect(relay.relay.stats().ingressStreams).toBe(1);
    (release as () => void)();
    const r = await pending;
    expect(r.status).toBe(200);
    expect(r.text).toBe(`got ${body.length}`);
  });
});

/** Bytes in ArrayBuffers (all Buffers of this process: relay, agent and app) after a full GC. */
function bufferBytes(): number {
  v8.setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
  return process.memoryUsage().arrayBuffers;
}

describe('a slow reader', () => {
  test('a 50 MB response to a client that never reads stops the app after a bounded amount, and is released when the client goes', async () => {
    const totalBytes = 50 * 1024 * 1024;
    let written = 0;
    let appSawClose = false;
    const { port: appPort } = await startApp((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': totalBytes });
      res.on('close', () => {
        appSawClose = true;
      });
      const chunk = Buffer.alloc(64 * 1024, 1);
      // Writes as fast as backpressure allows.
      const pump = (): void => {
        while (written < totalBytes && !res.destroyed) {
          written += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        if (written >= totalBytes) res.end();
      };
      pump();
    });
    const relay = await startRelay({ maxBodyBytes: 100 * 1024 * 1024 });
    const tunnel = await startTunnel(relay.url, appPort);
    const buffersBefore = bufferBytes();
    const client = net.connect(relay.port, '127.0.0.1');
    cleanups.push(() => {
      client.destroy();
    });
    client.on('error', () => {});
    client.write(crlf('GET /big HTTP/1.1', `Host: ${hostOf(tunnel.url)}`, ''));
    // Never read: the kernel's receive buffer fills, then the relay's socket, then the stream window.
    client.pause();
    await waitFor(() => written > 0, 3000, 'the app to start writing');
    await waitUntilSteady(() => written, 'the app to be held back', 10_000);
    // What the relay and the agent hold in memory: one stream window (1 MiB on one node) and a few socket reads
    // (well under 4 MB), not what the app wrote. V8 releases the memory of collected Buffers
    // concurrently, so the figure is read until it settles (under load it lags a GC by a moment).
    await waitFor(() => bufferBytes() - buffersBefore < 4 * 1024 * 1024, 5000, 'Buffers retained by the relay and agent to settle under 4 MB');
    // The rest sits in kernel socket buffers on the two loopback hops (app to agent, relay to client):
    // up to 4 MB of send buffer each here; about 9 MB in all was measured. Not the 50 MB.
    expect(written).toBeLessThan(16 * 1024 * 1024);
    expect(relay.relay.stats().ingressStreams).toBe(1);
    client.destroy();
    await waitFor(() => streamsIdle(relay), 3000, 'streams released');
    await waitFor(() => appSawClose, 3000, "the app's response to be closed");
    expect(written).toBeLessThan(totalBytes);
  });
});
