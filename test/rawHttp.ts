/**
 * Raw HTTP/1.1 for hostile-input tests: a client that writes exact bytes with node:net (node:http
 * refuses to send malformed requests) and parses whatever comes back, a response parser strict
 * enough to tell a complete response from a cut one, a local app that records exactly what it is
 * sent, and a raw local server that can answer anything. Everything started here is registered
 * for cleanup in test/kit.ts's list.
 */
import type http from 'node:http';
import net, { type Socket } from 'node:net';
import { cleanups, startApp } from './kit';
import { startTcpServer } from './tcpKit';

export interface RawResponse {
  readonly status: number;
  readonly reason: string;
  /** Lower-cased names; repeated headers joined with ', '. */
  readonly headers: Record<string, string>;
  readonly rawHeaders: readonly [string, string][];
  readonly body: Buffer;
  /** The body ended where its framing said (length, last chunk); false: the connection closed first. */
  readonly complete: boolean;
}

export interface RawExchange {
  readonly responses: RawResponse[];
  /** Everything the server sent. */
  readonly raw: Buffer;
  /** The server closed (FIN or RST) before we stopped reading. */
  readonly closed: boolean;
  /** The connection was reset rather than ended. */
  readonly reset: boolean;
  /** Bytes that did not parse as a response (after the last complete one). */
  readonly trailing: Buffer;
}

const CRLF2 = Buffer.from('\r\n\r\n');

/**
 * Parses responses from `buf`. `methods` says which request each response answers (HEAD has no
 * body); `eof` says the connection has closed (a close-delimited body ends there).
 */
export function parseResponses(buf: Buffer, methods: readonly string[] = [], eof = false): { responses: RawResponse[]; rest: Buffer } {
  const responses: RawResponse[] = [];
  let at = 0;
  for (;;) {
    const end = buf.indexOf(CRLF2, at);
    if (end < 0) break;
    const lines = buf.subarray(at, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0] ?? '');
    if (m === null) break;
    const status = Number(m[1]);
    const rawHeaders: [string, string][] = [];
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon);
      const value = line.slice(colon + 1).trim();
      rawHeaders.push([name, value]);
      const lower = name.toLowerCase();
      headers[lower] = headers[lower] === undefined ? value : `${headers[lower]}, ${value}`;
    }
    let p = end + 4;
    const method = status >= 200 ? methods[responses.filter((r) => r.status >= 200).length] : undefined;
    const bodiless = (status >= 100 && status < 200) || status === 204 || status === 304 || method === 'HEAD';
    let body = Buffer.alloc(0);
    let complete = true;
    if (bodiless) {
      // nothing
    } else if (headers['transfer-encoding'] !== undefined) {
      const parts: Buffer[] = [];
      complete = false;
      for (;;) {
        const lineEnd = buf.indexOf('\r\n', p);
        if (lineEnd < 0) break;
        const size = Number.parseInt(buf.subarray(p, lineEnd).toString('latin1'), 16);
        if (Number.isNaN(size)) break;
        if (size === 0) {
          const trailerEnd = buf.indexOf(CRLF2, lineEnd);
          if (buf.subarray(lineEnd, lineEnd + 2).equals(Buffer.from('\r\n')) && buf.subarray(lineEnd + 2, lineEnd + 4).equals(Buffer.from('\r\n'))) {
            p = lineEnd + 4;
            complete = true;
          } else if (trailerEnd >= 0) {
            p = trailerEnd + 4;
            complete = true;
          }
          break;
        }
        if (buf.length < lineEnd + 2 + size + 2) break;
        parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
        p = lineEnd + 2 + size + 2;
      }
      body = Buffer.concat(parts);
      if (!complete) {
        if (!eof) break;
        responses.push({ status, reason: m[2] ?? '', headers, rawHeaders, body, complete });
        return { responses, rest: Buffer.alloc(0) };
      }
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (buf.length < p + n) {
        if (!eof) break;
        responses.push({ status, reason: m[2] ?? '', headers, rawHeaders, body: buf.subarray(p), complete: false });
        return { responses, rest: Buffer.alloc(0) };
      }
      body = buf.subarray(p, p + n);
      p += n;
    } else {
      // Close-delimited: complete only at EOF.
      if (!eof) break;
      body = buf.subarray(p);
      p = buf.length;
    }
    responses.push({ status, reason: m[2] ?? '', headers, rawHeaders, body: Buffer.from(body), complete });
    at = p;
  }
  return { responses, rest: buf.subarray(at) };
}

export interface ExchangeOptions {
  /** Stop reading once this many final (non-1xx) responses are complete; default: read until the server closes. */
  readonly responses?: number;
  /** Request methods in order, for HEAD responses. */
  readonly methods?: readonly string[];
  /** Fail if the exchange is not over by then. */
  readonly timeoutMs?: number;
  /** Write the pieces one by one, each after the previous was flushed (and `gapMs` later, if set). */
  readonly pieces?: boolean;
}

/** Writes `bytes` to 127.0.0.1:port and reads the answer until it closes (or `responses` are in). */
export function rawExchange(port: number, bytes: Buffer | string | (Buffer | string)[], options: ExchangeOptions = {}): Promise<RawExchange> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const pieces = (Array.isArray(bytes) ? bytes : [bytes]).map((b) => (typeof b === 'string' ? Buffer.from(b, 'latin1') : b));
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    cleanups.push(() => {
      socket.destroy();
    });
    const parts: Buffer[] = [];
    let reset = false;
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const raw = Buffer.concat(parts);
      const { responses, rest } = parseResponses(raw, options.methods, closed);
      resolve({ responses, raw, closed, reset, trailing: rest });
    };
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      socket.destroy();
      reject(new Error(`raw exchange not over within ${timeoutMs} ms; got ${JSON.stringify(Buffer.concat(parts).toString('latin1').slice(0, 300))}`));
    }, timeoutMs);
    socket.on('data', (c: Buffer) => {
      parts.push(c);
      if (options.responses !== undefined) {
        const { responses } = parseResponses(Buffer.concat(parts), options.methods, false);
        if (responses.filter((r) => r.status >= 200).length >= options.responses) finish(false);
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET') reset = true;
    });
    socket.on('close', () => finish(true));
    socket.on('connect', () => {
      for (const p of pieces) socket.write(p);
    });
  });
}

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly httpVersion: string;
  readonly rawHeaders: readonly string[];
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
  /** The request body ended normally (false: aborted). */
  readonly complete: boolean;
}

export interface RecordingApp {
  readonly port: number;
  /** Every request the app received, complete or not, in arrival order. */
  readonly seen: SeenRequest[];
  /** Connection attempts that were upgrades (carried by the app's 'upgrade' event). */
  readonly upgrades: SeenRequest[];
}

function seenRequest(req: http.IncomingMessage, body: Buffer, complete: boolean): SeenRequest {
  return { method: req.method ?? '', url: req.url ?? '', httpVersion: req.httpVersion, rawHeaders: req.rawHeaders, headers: req.headers, body, complete };
}

/**
 * A node:http app that records exactly what reaches it and answers 200 with `app <method> <url>`.
 * An upgrade is recorded and answered 101 (then echoes).
 */
export async function startRecordingApp(): Promise<RecordingApp> {
  const seen: SeenRequest[] = [];
  const upgrades: SeenRequest[] = [];
  const { server, port } = await startApp((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    const record = (complete: boolean): void => {
      seen.push(seenRequest(req, Buffer.concat(parts), complete));
    };
    req.on('end', () => {
      record(true);
      const body = `app ${req.method} ${req.url}`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), 'x-app': 'yes' });
      res.end(body);
    });
    req.on('aborted', () => record(false));
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Socket) => {
    upgrades.push(seenRequest(req, Buffer.alloc(0), true));
    socket.on('error', () => {});
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${req.headers.upgrade ?? 'x'}\r\nx-app: yes\r\n\r\n`);
    socket.pipe(socket);
  });
  return { port, seen, upgrades };
}

/** A raw local TCP server for misbehaving apps; `onConnection` gets each socket. */
export async function startRawApp(onConnection: (socket: Socket) => void): Promise<{ port: number; connections: () => number }> {
  let count = 0;
  const port = await startTcpServer(
    (socket) => {
      count++;
      // As HTTP servers do (Node's among them): each write goes out at once, not held for an ACK.
      socket.setNoDelay(true);
      onConnection(socket);
    },
    { allowHalfOpen: false },
  );
  return { port, connections: () => count };
}

/** Reads one request head (up to CRLF CRLF) from a raw socket, then calls back with it and what followed. */
export function onRequestHead(socket: Socket, cb: (head: string, rest: Buffer) => void): void {
  let buf = Buffer.alloc(0);
  const onData = (c: Buffer): void => {
    buf = Buffer.concat([buf, c]);
    const end = buf.indexOf(CRLF2);
    if (end < 0) return;
    socket.off('data', onData);
    cb(buf.subarray(0, end).toString('latin1'), buf.subarray(end + 4));
  };
  socket.on('data', onData);
}
