/**
 * Test kit: real relays, real agents and real local servers on ephemeral loopback ports.
 * Everything started here is registered for cleanup with `using`-style disposers.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http, { type IncomingHttpHeaders, type IncomingMessage, type RequestListener, type Server } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { type ConnectOptions, connect, type Tunnel } from '@burrow/agent';
import type { Bus } from '@burrow/bus';
import { type KeyPair, keyPairFromSeed } from '@burrow/protocol';
import { buildRelay, type Relay, type RelayConfig, type RelayDeps, relayConfig } from '@burrow/relay';

export const cleanups: (() => Promise<void> | void)[] = [];

/** Runs and clears every registered cleanup, newest first. Call from afterEach. */
export async function cleanup(): Promise<void> {
  while (cleanups.length > 0) {
    const fn = cleanups.pop() as () => Promise<void> | void;
    try {
      await fn();
    } catch {
      // keep cleaning
    }
  }
}

export function newKey(): KeyPair {
  return keyPairFromSeed(randomBytes(32));
}

export interface StartedRelay {
  readonly relay: Relay;
  /** Apex URL, e.g. http://localhost:41234 */
  readonly url: string;
  readonly port: number;
}

export async function startRelay(overrides: Partial<RelayConfig> = {}, bus?: Bus, deps: Omit<RelayDeps, 'bus'> = {}): Promise<StartedRelay> {
  const config = relayConfig({ host: '127.0.0.1', port: 0, logLevel: 'silent', ...overrides });
  const relay = await buildRelay(config, { ...deps, ...(bus !== undefined ? { bus } : {}) });
  const url = await relay.listen();
  cleanups.push(() => relay.close());
  return { relay, url, port: (relay.app.server.address() as AddressInfo).port };
}

export async function startApp(handler: RequestListener): Promise<{ server: Server; port: number }> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { server, port: (server.address() as AddressInfo).port };
}

export async function startTunnel(relayUrl: string, to: number | string, options: Partial<ConnectOptions> = {}): Promise<Tunnel> {
  const tunnel = await connect({ relay: relayUrl, to, keyPair: options.keyPair ?? newKey(), timeoutMs: 5000, ...options });
  cleanups.push(() => tunnel.close());
  return tunnel;
}

export interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: string[];
  readonly body: Buffer;
  readonly text: string;
}

export interface RequestOptions {
  readonly method?: string;
  readonly path?: string;
  readonly headers?: Record<string, string | string[]>;
  readonly body?: Buffer | string;
  /** Send the body in these pieces (chunked transfer encoding). */
  readonly chunks?: (Buffer | string)[];
}

/** An HTTP request to the relay's port with Host set to the tunnel's host. */
export function request(port: number, host: string, options: RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | string[]> = { host, ...options.headers };
    // Node's client omits Content-Length for some methods (DELETE, OPTIONS) when a body is passed to end().
    if (options.body !== undefined && options.chunks === undefined) headers['content-length'] = String(Buffer.byteLength(options.body));
    const req = http.request(
      { host: '127.0.0.1', port, method: options.method ?? 'GET', path: options.path ?? '/', headers, agent: false },
      (res: IncomingMessage) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          const body = Buffer.concat(parts);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body, text: body.toString('utf8') });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (options.chunks !== undefined) {
      for (const c of options.chunks) req.write(c);
      req.end();
    } else req.end(options.body);
  });
}

/** Host header for a tunnel URL (host:port). */
export function hostOf(url: string): string {
  return new URL(url).host;
}

/** A loopback port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Polls until `check` returns true or the deadline passes. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Waits until a counter stops moving (same value 100 ms apart): backpressure has taken hold. */
export async function waitUntilSteady(read: () => number, what: string, timeoutMs = 5000): Promise<void> {
  let last = -1;
  await waitFor(
    async () => {
      const now = read();
      const steady = now === last;
      last = now;
      await new Promise((r) => setTimeout(r, 100));
      return steady;
    },
    timeoutMs,
    what,
  );
}

export function once<T = unknown>(emitter: NodeJS.EventEmitter, event: string): Promise<T> {
  return new Promise((resolve) => emitter.once(event, (v: T) => resolve(v)));
}

import { decodeFrames, decodeHello, encodeFrame, encodeJson, type Frame, FrameType, signRegistration } from '@burrow/protocol';
import WebSocket from 'ws';

/** A hand-made agent speaking raw frames, for protocol and hostile-agent tests. */
export class RawAgent {
  readonly frames: Frame[] = [];
  closeCode: number | undefined;
  /** The close frame's reason text (the relay puts the BURROW_ERR_* code there). */
  closeReason: string | undefined;
  private waiters: (() => void)[] = [];
  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      decodeFrames(data, 'relayToAgent', (f) => this.frames.push({ ...f, payload: Buffer.from(f.payload) }));
      this.wake();
    });
    ws.on('close', (code: number, reason: Buffer) => {
      this.closeCode = code;
      this.closeReason = reason.toString();
      this.wake();
    });
    ws.on('error', () => {});
  }
  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
  static async open(relayUrl: string, headers: Record<string, string> = {}): Promise<RawAgent> {
    const ws = new WebSocket(`${relayUrl.replace(/^http/, 'ws')}/_burrow/connect`, { headers });
    const agent = new RawAgent(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    cleanups.push(() => ws.terminate());
    return agent;
  }
  /** Waits for a frame of `type` (already received or future). */
  async next(type: FrameType, timeoutMs = 3000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex((f) => f.type === type);
      if (i >= 0) return this.frames.splice(i, 1)[0] as Frame;
      if (this.closeCode !== undefined) throw new Error(`socket closed (${this.closeCode}) before frame 0x${type.toString(16)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame 0x${type.toString(16)} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
  /** Waits, woken by each frame and by the close, until `check` holds. */
  async until(check: () => boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
  async closed(timeoutMs = 3000): Promise<number> {
    await waitFor(() => this.closeCode !== undefined, timeoutMs, 'socket close');
    return this.closeCode as number;
  }
  send(...frames: Buffer[]): void {
    this.ws.send(Buffer.concat(frames));
  }
  /** Reads HELLO and registers with `key`; `tweak` may alter the signing input. */
  async register(key: KeyPair, relayUrl: string, tweak: Partial<Parameters<typeof signRegistration>[0]> = {}): Promise<Frame> {
    const hello = decodeHello((await this.next(FrameType.HELLO)).payload);
    const payload = signRegistration({ secretKey: key.secretKey, nonce: hello.nonce, audience: relayUrl, nowMs: Date.now(), ...tweak });
    this.send(encodeFrame(FrameType.REGISTER, 0, 0, encodeJson(payload)));
    return hello as unknown as Frame;
  }
}

/** A Node script run as a child process (a shipped binary): its stdout lines, stderr and exit code. */
export interface NodeRun {
  readonly child: ChildProcess;
  readonly lines: string[];
  stderr(): string;
  readonly exit: Promise<number | null>;
}

/** Runs `node <script> <args>` with `env` over this process's; SIGKILLed at cleanup if still running. */
export function runNode(script: string, args: readonly string[], env: Record<string, string> = {}): NodeRun {
  const child = spawn(process.execPath, [script, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let err = '';
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (l) => lines.push(l));
  child.stderr?.on('data', (c: Buffer) => {
    err += c.toString();
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, lines, stderr: () => err, exit };
}
