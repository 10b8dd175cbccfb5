/**
 * The traffic mix: one operation of each kind against a tunnel through a chosen relay node, each
 * checked byte for byte against what the local app (localApp.ts) must have answered, each with a
 * deadline. Returns an outcome and never throws; knows nothing of faults or attribution.
 *   get        GET /hello?i=N: status, body and a response header
 *   post       POST /echo with 1 B..256 KiB of random bytes (Content-Length or chunked): echoed exactly
 *   download   GET /bytes: 1 MiB, compared with the reference
 *   sse        GET /sse: 10..30 events 100 ms apart, in order, exact, arriving as they are written
 *   websocket  5..20 messages (text and binary, 1 B..64 KiB) echoed exactly, then a clean 1000 close
 */
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';
import WebSocket from 'ws';
import type { OpKind, OpOutcome } from './ledger';
import { DOWNLOAD_BYTES, REFERENCE, sseText } from './localApp';
import type { Random } from './random';

/** Where an operation goes: the relay port it enters on and the Host naming the tunnel there. */
export interface OpTarget {
  readonly port: number;
  readonly host: string;
}

/** How often each kind is picked (the long ones are rarer). */
export const OP_WEIGHTS: Readonly<Record<OpKind, number>> = { get: 35, post: 20, download: 10, sse: 15, websocket: 20 };

const SHORT_DEADLINE_MS = 15_000;
const LONG_DEADLINE_MS = 30_000;
const SSE_INTERVAL_MS = 100;

const fail = (error: string, bytes = 0, units = 0, defect = false): OpOutcome => ({ ok: false, error, defect, bytes, units });

function errorText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return `${e.code !== undefined ? `${e.code} ` : ''}${e.message ?? String(err)}`.slice(0, 300);
}

interface Exchange {
  readonly status: number;
  readonly res: IncomingMessage;
  readonly body: Buffer;
  /** Separate 'data' events the body came in. */
  readonly chunks: number;
}

/** One HTTP exchange; rejects on socket errors, an incomplete response or the deadline. */
function exchange(target: OpTarget, options: { method: string; path: string; body?: Buffer; chunked?: boolean; timeoutMs: number }): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host: target.host };
    if (options.body !== undefined && options.chunked !== true) headers['content-length'] = String(options.body.length);
    const req = http.request({ host: '127.0.0.1', port: target.port, method: options.method, path: options.path, headers, agent: false });
    const timer = setTimeout(() => req.destroy(new Error(`no complete answer within ${options.timeoutMs} ms`)), options.timeoutMs);
    const done = (err: Error | undefined, value?: Exchange): void => {
      clearTimeout(timer);
      if (err !== undefined) reject(err);
      else resolve(value as Exchange);
    };
    req.on('error', (err) => done(err));
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('error', (err) => done(err));
      res.on('end', () => {
        if (!res.complete) done(new Error('response ended incomplete'));
        else done(undefined, { status: res.statusCode ?? 0, res, body: Buffer.concat(parts), chunks: parts.length });
      });
      res.on('close', () => {
        if (!res.complete) done(new Error('connection closed before the response was complete'));
      });
    });
    if (options.body !== undefined && options.chunked === true) {
      // A few pieces, so the relay sees a chunked body arrive over time.
      const b = options.body;
      const cuts = [0, Math.floor(b.length / 3), Math.floor((2 * b.length) / 3), b.length];
      for (let i = 0; i < 3; i++) req.write(b.subarray(cuts[i], cuts[i + 1]));
      req.end();
    } else req.end(options.body);
  });
}

/** "HTTP 502 BURROW_ERR_… — <the page's text>": the code, then what the relay's page says (HTML tags dropped). */
function statusError(x: Exchange): string {
  const code = x.res.headers['x-burrow-error'];
  const text = x.body
    .subarray(0, 4096)
    .toString('utf8')
    .replace(/<(style|script)[\s\S]*?<\/\1>/gi, ' ')
    .replace(/<[^>]*>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 240);
  return `HTTP ${x.status}${code !== undefined ? ` ${String(code)}` : ''}${text !== '' ? ` — ${text}` : ''}`;
}

async function get(target: OpTarget, rng: Random): Promise<OpOutcome> {
  const i = String(rng.int(0, 1e9));
  const x = await exchange(target, { method: 'GET', path: `/hello?i=${i}`, timeoutMs: SHORT_DEADLINE_MS });
  if (x.status !== 200) return fail(statusError(x), x.body.length, 1);
  if (x.body.toString('utf8') !== `hello ${i}` || x.res.headers['x-soak-i'] !== i)
    return fail(`wrong answer: ${JSON.stringify(x.body.toString('utf8').slice(0, 80))}, x-soak-i ${String(x.res.headers['x-soak-i'])}`, x.body.length, 1, true);
  return { ok: true, bytes: x.body.length, units: 1 };
}

async function post(target: OpTarget, rng: Random): Promise<OpOutcome> {
  const size = rng.next() < 0.3 ? rng.int(1, 1024) : rng.int(1024, 256 * 1024);
  const body = randomBytes(size);
  const chunked = rng.next() < 0.5;
  const x = await exchange(target, { method: 'POST', path: '/echo', body, chunked, timeoutMs: SHORT_DEADLINE_MS });
  if (x.status !== 200) return fail(statusError(x), size, 1);
  if (!x.body.equals(body)) return fail(`echo differs: sent ${size} bytes${chunked ? ' chunked' : ''}, got ${x.body.length}`, size + x.body.length, 1, true);
  return { ok: true, bytes: 2 * size, units: 1 };
}

async function download(target: OpTarget, rng: Random): Promise<OpOutcome> {
  const off = rng.int(0, DOWNLOAD_BYTES - 1);
  const x = await exchange(target, { method: 'GET', path: `/bytes?off=${off}`, timeoutMs: LONG_DEADLINE_MS });
  if (x.status !== 200) return fail(statusError(x), x.body.length, 1);
  const b = x.body;
  const head = DOWNLOAD_BYTES - off;
  if (b.length !== DOWNLOAD_BYTES || !b.subarray(0, head).equals(REFERENCE.subarray(off)) || !b.subarray(head).equals(REFERENCE.subarray(0, off)))
    return fail(`download differs: ${b.length} of ${DOWNLOAD_BYTES} bytes, rotated by ${off}`, b.length, 1, true);
  return { ok: true, bytes: b.length, units: 1 };
}

async function sse(target: OpTarget, rng: Random): Promise<OpOutcome> {
  const n = rng.int(10, 30);
  const tag = randomBytes(6).toString('hex');
  const x = await exchange(target, { method: 'GET', path: `/sse?n=${n}&ms=${SSE_INTERVAL_MS}&tag=${tag}`, timeoutMs: n * SSE_INTERVAL_MS + SHORT_DEADLINE_MS });
  if (x.status !== 200) return fail(statusError(x), x.body.length, 0);
  const text = x.body.toString('utf8');
  if (text !== sseText(n, tag)) return fail(`event stream differs: ${x.body.length} bytes, expected ${n} events`, x.body.length, 0, true);
  // n events written 100 ms apart cannot arrive in one piece unless something held them back.
  if (x.chunks < 2) return fail(`event stream not streamed: ${n} events arrived in ${x.chunks} piece`, x.body.length, n, true);
  return { ok: true, bytes: x.body.length, units: n };
}

function websocket(target: OpTarget, rng: Random): Promise<OpOutcome> {
  const count = rng.int(5, 20);
  return new Promise((resolve) => {
    let bytes = 0;
    let echoed = 0;
    let settled = false;
    const ws = new WebSocket(`ws://127.0.0.1:${target.port}/ws`, { headers: { host: target.host }, perMessageDeflate: false });
    const finish = (outcome: OpOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(pause);
      if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
      resolve(outcome);
    };
    const timer = setTimeout(() => finish(fail(`session not done within ${LONG_DEADLINE_MS} ms (${echoed}/${count} echoed)`, bytes, echoed)), LONG_DEADLINE_MS);
    let pause: NodeJS.Timeout | undefined;
    let expected: { data: Buffer; binary: boolean } | undefined;
    const sendNext = (): void => {
      if (echoed === count) {
        ws.close(1000, 'done');
        return;
      }
      const size = rng.next() < 0.5 ? rng.int(1, 512) : rng.int(512, 64 * 1024);
      const binary = rng.next() < 0.5;
      const data = binary
        ? randomBytes(size)
        : Buffer.from(
            randomBytes(Math.ceil(size / 2))
              .toString('hex')
              .slice(0, size),
            'latin1',
          );
      expected = { data, binary };
      bytes += size;
      ws.send(binary ? data : data.toString('latin1'), { binary });
    };
    ws.on('unexpected-response', (_req, res) => {
      const code = res.headers['x-burrow-error'];
      res.resume();
      finish(fail(`upgrade refused: HTTP ${res.statusCode}${code !== undefined ? ` ${String(code)}` : ''}`));
    });
    ws.on('error', (err) => finish(fail(errorText(err), bytes, echoed)));
    ws.on('open', sendNext);
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const e = expected;
      bytes += data.length;
      if (e === undefined || isBinary !== e.binary || !data.equals(e.data)) {
        finish(
          fail(
            `message ${echoed + 1} echoed wrong: ${data.length} bytes ${isBinary ? 'binary' : 'text'}, sent ${e?.data.length} ${e?.binary ? 'binary' : 'text'}`,
            bytes,
            echoed,
            true,
          ),
        );
        return;
      }
      expected = undefined;
      echoed++;
      pause = setTimeout(sendNext, rng.int(0, 50));
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (echoed === count && code === 1000) finish({ ok: true, bytes, units: count });
      else
        finish(
          fail(`closed with ${code}${reason.length > 0 ? ` ${reason.toString('utf8').slice(0, 100)}` : ''} after ${echoed}/${count} messages`, bytes, echoed),
        );
    });
  });
}

const RUN: Record<OpKind, (target: OpTarget, rng: Random) => Promise<OpOutcome>> = { get, post, download, sse, websocket };

/** Runs one operation; every error becomes a failed outcome. */
export async function runOp(kind: OpKind, target: OpTarget, rng: Random): Promise<OpOutcome> {
  try {
    return await RUN[kind](target, rng);
  } catch (err) {
    return fail(errorText(err));
  }
}
