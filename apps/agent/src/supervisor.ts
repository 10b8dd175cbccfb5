/**
 * `burrow start --config <file>`: one process, one worker (an Agent) per forward. A worker that
 * fails (emits 'fatal' or throws while being made or started) is restarted with capped backoff;
 * the process gives up, stops the other forwards and exits 1 when a forward cannot run:
 *
 * - a registration error that retrying cannot fix (UNFIXABLE: name taken, token refused, another
 *   agent took the session over, wrong relay, ...): at once;
 * - MAX_FAILURES failures in a row without the forward coming online in between.
 *
 * Losing the relay is not a failure: an Agent reconnects by itself (and says 'reconnecting').
 */
import { EventEmitter } from 'node:events';
import { labelFor } from '@burrow/protocol';
import { Agent, type AgentEvents, type OnlineEvent, type ReconnectingEvent } from './agent';
import type { StartCommand } from './cli';
import { type AgentConfig, ConfigError, type ForwardConfig, forwardKindHook, loadConfigFile } from './configFile';
import './forwardKinds';
import { KeyFileError, type LoadedKey, loadOrCreateKey } from './keyStore';
import type { RequestEvent } from './localForward';
import type { ConnectionEvent } from './localTcp';
import { connectionFields, requestFields } from './output';

/** What the supervisor needs of a worker; Agent is one. */
export interface ForwardWorker extends Pick<EventEmitter<AgentEvents>, 'on'> {
  start(): void;
  close(): Promise<void>;
}

/** Registration errors a restart cannot fix: the forward (and `start`) stops at once. */
export const UNFIXABLE: ReadonlySet<string> = new Set([
  'BURROW_ERR_BAD_SIGNATURE',
  'BURROW_ERR_BAD_REGISTRATION',
  'BURROW_ERR_WRONG_AUDIENCE',
  'BURROW_ERR_UNSUPPORTED_VERSION',
  'BURROW_ERR_NAME_TAKEN',
  'BURROW_ERR_NAME_RESERVED',
  'BURROW_ERR_INVALID_NAME',
  'BURROW_ERR_TOKEN_REQUIRED',
  'BURROW_ERR_TOKEN_INVALID',
  'BURROW_ERR_TOKEN_REVOKED',
  // Another agent with the same key and session took over: restarting would take it back, and so on.
  'BURROW_ERR_SESSION_REPLACED',
]);

export const MAX_FAILURES = 5;
export const RESTART_INITIAL_MS = 1000;
export const RESTART_MAX_MS = 30_000;

export interface SupervisorOptions<F extends { readonly name: string }> {
  readonly forwards: readonly F[];
  /** Makes a fresh worker for a forward; may throw (counted as a failure). */
  readonly createWorker: (forward: F) => ForwardWorker;
  /** Failures in a row, without coming online, before giving up; default 5. */
  readonly maxFailures?: number;
  /** Restart delays: initial, doubling, capped; defaults 1 s and 30 s. */
  readonly restartInitialMs?: number;
  readonly restartMaxMs?: number;
}

export type SupervisorEvent =
  | { readonly type: 'online'; readonly forward: string; readonly online: OnlineEvent }
  | { readonly type: 'request'; readonly forward: string; readonly request: RequestEvent }
  /** A TCP connection of a tcp, share or connect forward ended. */
  | { readonly type: 'connection'; readonly forward: string; readonly connection: ConnectionEvent }
  | { readonly type: 'reconnecting'; readonly forward: string; readonly reconnecting: ReconnectingEvent }
  /** A worker failed and will be restarted after delayMs. */
  | {
      readonly type: 'restarting';
      readonly forward: string;
      readonly code: string;
      readonly message: string;
      readonly failures: number;
      readonly maxFailures: number;
      readonly delayMs: number;
    }
  /** A forward cannot run: every forward is being stopped and `start` exits 1. */
  | {
      readonly type: 'error';
      readonly forward: string;
      readonly code: string;
      readonly message: string;
      readonly failures: number;
      /** unfixable: an error retrying cannot fix; repeated: maxFailures failures in a row. */
      readonly why: 'unfixable' | 'repeated';
    };

export interface SupervisorEvents {
  event: [SupervisorEvent];
}

export interface SupervisorResult {
  /** 0 when stopped by stop(); 1 when a forward could not run. */
  readonly exitCode: 0 | 1;
  readonly forward?: string;
  readonly code?: string;
  readonly message?: string;
}

interface Slot<F> {
  readonly forward: F;
  worker: ForwardWorker | undefined;
  failures: number;
  timer: NodeJS.Timeout | undefined;
}

export class Supervisor<F extends { readonly name: string }> extends EventEmitter<SupervisorEvents> {
  /** Settles once every worker is stopped, after stop() or after giving up on a forward. */
  readonly done: Promise<SupervisorResult>;
  private resolveDone!: (r: SupervisorResult) => void;
  private readonly slots: Slot<F>[];
  private stopping = false;
  private result: SupervisorResult = { exitCode: 0 };
  private stopPromise: Promise<SupervisorResult> | undefined;
  private readonly maxFailures: number;
  private readonly initialMs: number;
  private readonly maxMs: number;

  constructor(private readonly options: SupervisorOptions<F>) {
    super();
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
    this.slots = options.forwards.map((forward) => ({ forward, worker: undefined, failures: 0, timer: undefined }));
    this.maxFailures = options.maxFailures ?? MAX_FAILURES;
    this.initialMs = options.restartInitialMs ?? RESTART_INITIAL_MS;
    this.maxMs = options.restartMaxMs ?? RESTART_MAX_MS;
  }

  /** Starts every forward; returns at once. */
  start(): void {
    for (const slot of this.slots) this.launch(slot);
  }

  /** Closes every worker (each tells its relay); resolves with the result. Idempotent. */
  stop(): Promise<SupervisorResult> {
    this.stopPromise ??= (async () => {
      this.stopping = true;
      const closing: Promise<void>[] = [];
      for (const slot of this.slots) {
        clearTimeout(slot.timer);
        slot.timer = undefined;
        if (slot.worker !== undefined) closing.push(slot.worker.close().catch(() => {}));
        slot.worker = undefined;
      }
      await Promise.all(closing);
      this.resolveDone(this.result);
      return this.result;
    })();
    return this.stopPromise;
  }

  private launch(slot: Slot<F>): void {
    slot.timer = undefined;
    if (this.stopping) return;
    const name = slot.forward.name;
    let worker: ForwardWorker | undefined;
    try {
      const w = this.options.createWorker(slot.forward);
      worker = w;
      slot.worker = w;
      w.on('online', (online) => {
        if (slot.worker !== w) return;
        slot.failures = 0;
        this.emit('event', { type: 'online', forward: name, online });
      });
      w.on('request', (request) => this.emit('event', { type: 'request', forward: name, request }));
      w.on('connection', (connection) => this.emit('event', { type: 'connection', forward: name, connection }));
      w.on('reconnecting', (reconnecting) => {
        if (slot.worker === w) this.emit('event', { type: 'reconnecting', forward: name, reconnecting });
      });
      w.on('fatal', (err) => this.failed(slot, w, err));
      w.start();
    } catch (err) {
      this.failed(slot, worker, err);
    }
  }

  private failed(slot: Slot<F>, worker: ForwardWorker | undefined, err: unknown): void {
    if (this.stopping || slot.worker !== worker) return;
    slot.worker = undefined;
    // A fatal Agent has stopped already; this makes sure of it for any worker.
    worker?.close().catch(() => {});
    slot.failures++;
    const e = err as { code?: unknown; message?: unknown };
    const code = typeof e?.code === 'string' ? e.code : 'BURROW_ERR_INTERNAL';
    const message = typeof e?.message === 'string' ? e.message : String(err);
    const forward = slot.forward.name;
    const why = UNFIXABLE.has(code) ? 'unfixable' : slot.failures >= this.maxFailures ? 'repeated' : undefined;
    if (why !== undefined) {
      this.result = { exitCode: 1, forward, code, message };
      this.emit('event', { type: 'error', forward, code, message, failures: slot.failures, why });
      void this.stop();
      return;
    }
    const delayMs = Math.min(this.maxMs, this.initialMs * 2 ** (slot.failures - 1));
    this.emit('event', { type: 'restarting', forward, code, message, failures: slot.failures, maxFailures: this.maxFailures, delayMs });
    slot.timer = setTimeout(() => this.launch(slot), delayMs);
  }
}

type Write = (line: string) => void;

/** One JSON object per line, each with the forward's name. */
export function attachStartJsonOutput(supervisor: EventEmitter<SupervisorEvents>, write: Write): void {
  const out = (obj: object): void => write(`${JSON.stringify(obj)}\n`);
  supervisor.on('event', (e) => {
    switch (e.type) {
      case 'online': {
        const o = e.online;
        out({
          event: o.reconnected ? 'reconnected' : 'online',
          forward: e.forward,
          url: o.subdomainUrl ?? o.url,
          label: o.label,
          ...(o.subdomainUrl !== undefined ? { labelUrl: o.url } : {}),
          ...(o.tcpUrl !== undefined ? { tcpUrl: o.tcpUrl } : {}),
          ...(o.share !== undefined ? { share: o.share } : {}),
        });
        return;
      }
      case 'connection': {
        out({ event: 'connection', forward: e.forward, ...connectionFields(e.connection) });
        return;
      }
      case 'request': {
        out({ event: 'request', forward: e.forward, ...requestFields(e.request) });
        return;
      }
      case 'reconnecting': {
        const r = e.reconnecting;
        out({ event: 'reconnecting', forward: e.forward, attempt: r.attempt, delayMs: r.delayMs, reason: r.reason });
        return;
      }
      case 'restarting':
        out({ event: 'restarting', forward: e.forward, code: e.code, message: e.message, failures: e.failures, delayMs: e.delayMs });
        return;
      case 'error':
        out({ event: 'error', forward: e.forward, code: e.code, message: e.message, failures: e.failures, why: e.why });
        return;
    }
  });
}

/** Human lines, each starting with the forward's name. `origins` maps names to what they forward to. */
export function attachStartHumanOutput(supervisor: EventEmitter<SupervisorEvents>, origins: ReadonlyMap<string, string>, write: Write, color: boolean): void {
  const c = (code: string, s: string): string => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
  const width = Math.max(...[...origins.keys()].map((n) => n.length));
  const tag = (name: string): string => c('36', name.padEnd(width));
  supervisor.on('event', (e) => {
    const who = tag(e.forward);
    switch (e.type) {
      case 'online': {
        const o = e.online;
        const to = origins.get(e.forward) ?? '';
        const shown = o.tcpUrl ?? (o.share !== undefined ? `share ${o.share}` : o.url !== '' ? (o.subdomainUrl ?? o.url) : 'connected');
        if (o.reconnected) write(`${who}  ${c('32', 'reconnected')}  ${shown}\n`);
        else {
          write(`${who}  ${c('1;32', 'online')}  ${c('1', shown)}  →  ${to}\n`);
          if (o.subdomainUrl !== undefined) write(`${who}  ${c('1;32', 'online')}  ${c('1', o.url)}  →  ${to}\n`);
        }
        return;
      }
      case 'request': {
        const r = e.request;
        const status =
          r.status === 0 ? c('31', (r.error ?? 'ERR').replace('BURROW_ERR_', '')) : c(r.status >= 500 ? '31' : r.status >= 400 ? '33' : '32', String(r.status));
        const ms = `${r.durationMs < 10 ? r.durationMs.toFixed(1) : Math.round(r.durationMs)} ms`;
        const tail = r.detail !== undefined && r.status === 0 ? `  ${c('2', r.detail)}` : '';
        const path = r.path.length > 60 ? `${r.path.slice(0, 57)}...` : r.path.padEnd(60);
        write(`${who}  ${(r.websocket ? 'WS' : r.method).padEnd(7)} ${path} ${status} ${c('2', ms)}${tail}\n`);
        return;
      }
      case 'connection': {
        const t = e.connection;
        const ms = `${t.durationMs < 10 ? t.durationMs.toFixed(1) : Math.round(t.durationMs)} ms`;
        const outcome = t.error === undefined ? c('32', 'closed') : c('31', t.error.replace('BURROW_ERR_', ''));
        const tail = t.detail !== undefined ? `  ${c('2', t.detail)}` : '';
        write(`${who}  TCP     ${t.client.padEnd(24)} ${outcome} ${c('2', `${ms}, ${t.bytesIn} B in, ${t.bytesOut} B out`)}${tail}\n`);
        return;
      }
      case 'reconnecting': {
        const r = e.reconnecting;
        write(`${who}  ${c('33', 'reconnecting')} in ${(r.delayMs / 1000).toFixed(1)} s (attempt ${r.attempt}): ${r.reason}\n`);
        return;
      }
      case 'restarting':
        write(
          `${who}  ${c('33', 'failed')} ${e.code}: ${e.message}; restarting in ${(e.delayMs / 1000).toFixed(1)} s (failure ${e.failures} of ${e.maxFailures})\n`,
        );
        return;
      case 'error': {
        const why = e.why === 'unfixable' ? 'retrying cannot fix this' : `failed ${e.failures} times in a row`;
        write(`${who}  ${c('31', 'error')} ${e.code}: ${e.message} (${why}); stopping every forward\n`);
        return;
      }
    }
  });
}

/** What a forward reaches, for the human output. */
function originOf(f: ForwardConfig): string {
  if (f.kind === 'http') return f.target.origin;
  const o = f.options as { target?: { origin?: string } | string; listen?: { host: string; port: number }; share?: string };
  if (f.kind === 'connect') return `${o.listen?.host}:${o.listen?.port} → share ${o.share}`;
  return typeof o.target === 'object' && o.target?.origin !== undefined ? o.target.origin : f.kind;
}

/** The worker for one forward: an Agent for http, the kind's hook for others. */
export function createForwardWorker(forward: ForwardConfig, key: LoadedKey): ForwardWorker {
  if (forward.kind !== 'http') {
    const hook = forwardKindHook(forward.kind);
    if (hook === undefined) throw new ConfigError(`${forward.kind} forwards are not supported yet`);
    return hook.createWorker(forward, key.keyPair);
  }
  return new Agent({
    relay: forward.relay,
    target: forward.target,
    keyPair: key.keyPair,
    hostHeader: forward.hostHeader,
    insecureLocalTls: forward.insecureLocalTls,
    deadAfterMs: forward.deadAfterMs,
    ...(forward.subdomain !== undefined ? { subdomain: forward.subdomain } : {}),
    ...(forward.session !== undefined ? { session: forward.session } : {}),
    ...(forward.access !== undefined ? { access: forward.access } : {}),
    ...(forward.token !== undefined ? { token: forward.token } : {}),
  });
}

/** Loads every key the forwards use (once per file) and checks no two forwards share a label. */
export function loadKeys(config: AgentConfig): Map<string, LoadedKey> {
  const keys = new Map<string, LoadedKey>();
  const labels = new Map<string, string>();
  for (const f of config.forwards) {
    let key = keys.get(f.keyFile);
    if (key === undefined) {
      key = loadOrCreateKey(f.keyFile);
      keys.set(f.keyFile, key);
    }
    // Shares and connectors claim no URL of their key.
    if (f.kind === 'share' || f.kind === 'connect') continue;
    // Two key paths may hold one key (a link, a copy): the labels tell.
    const label = labelFor(key.keyPair.publicKey, f.session);
    const other = labels.get(label);
    if (other !== undefined) {
      throw new ConfigError(
        `${config.file}: forwards "${other}" and "${f.name}" would share one URL: their key files hold the same key and ${f.session !== undefined ? `both use session "${f.session}"` : 'neither has a session'}; give each its own "session"`,
      );
    }
    labels.set(label, f.name);
  }
  return keys;
}

export interface StartIo {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly out: Write;
  readonly log: Write;
  readonly color: boolean;
  readonly exit: (code: number) => void;
}

/** Runs `burrow start`: bad config or key files exit 2, a forward that cannot run exits 1, SIGINT/SIGTERM exit 0. */
export function runStart(command: StartCommand, io: StartIo): Supervisor<ForwardConfig> | undefined {
  let config: AgentConfig;
  let keys: Map<string, LoadedKey>;
  try {
    config = loadConfigFile(command.configFile, io.env);
    keys = loadKeys(config);
  } catch (err) {
    io.log(`burrow: ${(err as Error).message}\n`);
    io.exit(err instanceof ConfigError || err instanceof KeyFileError ? 2 : 1);
    return undefined;
  }
  for (const key of keys.values()) {
    if (key.created) io.log(`burrow: created a new key at ${key.path}\n`);
    if (key.looseMode !== undefined) io.log(`burrow: warning: ${key.path} is readable by others (mode ${key.looseMode.toString(8)}); run chmod 600 on it\n`);
  }
  const supervisor = new Supervisor<ForwardConfig>({
    forwards: config.forwards,
    createWorker: (f) => createForwardWorker(f, keys.get(f.keyFile) as LoadedKey),
  });
  if (command.json) attachStartJsonOutput(supervisor, io.out);
  else attachStartHumanOutput(supervisor, new Map(config.forwards.map((f) => [f.name, originOf(f)])), io.out, io.color);
  supervisor.on('event', (e) => {
    if (e.type === 'error') io.log(`burrow: forward "${e.forward}" cannot run: ${e.code}: ${e.message}\n`);
  });
  supervisor.done.then((r) => io.exit(r.exitCode));
  supervisor.start();
  return supervisor;
}
