/**
 * What the CLI prints: a human view (URL, then a line per request, reconnect notices) or one
 * JSON object per line with --json.
 */
import { hostPort } from '@burrow/protocol';
import { type Agent, targetHostPort } from './agent';
import type { ConnectCommand, ShareCommand } from './cli';
import type { Connector } from './connector';
import type { RequestEvent } from './localForward';
import type { LocalTarget } from './localTarget';
import type { ConnectionEvent } from './localTcp';

type Write = (line: string) => void;

export function attachJsonOutput(agent: Agent, write: Write): void {
  const out = (obj: object): void => write(`${JSON.stringify(obj)}\n`);
  agent.on('online', (e) =>
    out({
      event: e.reconnected ? 'reconnected' : 'online',
      url: e.subdomainUrl ?? e.url,
      label: e.label,
      ...(e.subdomainUrl !== undefined ? { labelUrl: e.url } : {}),
      ...(e.tcpUrl !== undefined ? { tcpUrl: e.tcpUrl } : {}),
    }),
  );
  agent.on('connection', (e) => out({ event: 'connection', ...connectionFields(e) }));
  agent.on('request', (e) => out({ event: 'request', ...requestFields(e) }));
  agent.on('reconnecting', (e) => out({ event: 'reconnecting', attempt: e.attempt, delayMs: e.delayMs, reason: e.reason }));
  agent.on('fatal', (err) => out({ event: 'error', code: err.code, message: err.message }));
}

export function attachHumanOutput(agent: Agent, target: LocalTarget, write: Write, color: boolean): void {
  const c = (code: string, s: string): string => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
  agent.on('online', (e) => {
    if (e.reconnected) {
      write(`${c('32', 'reconnected')}  ${e.tcpUrl ?? e.subdomainUrl ?? e.url}\n`);
      return;
    }
    write(`${c('1;32', 'burrow online')}\n`);
    if (e.tcpUrl !== undefined) {
      write(`  ${c('1', e.tcpUrl)}  →  ${target.origin}\n\n`);
      return;
    }
    if (e.subdomainUrl !== undefined) write(`  ${c('1', e.subdomainUrl)}  →  ${target.origin}\n`);
    write(`  ${c('1', e.url)}  →  ${target.origin}\n\n`);
  });
  agent.on('request', (e) => {
    const status =
      e.status === 0 ? c('31', (e.error ?? 'ERR').replace('BURROW_ERR_', '')) : c(e.status >= 500 ? '31' : e.status >= 400 ? '33' : '32', String(e.status));
    const ms = `${e.durationMs < 10 ? e.durationMs.toFixed(1) : Math.round(e.durationMs)} ms`;
    const tail = e.detail !== undefined && e.status === 0 ? `  ${c('2', e.detail)}` : '';
    write(
      `${(e.websocket ? 'WS' : e.method).padEnd(7)} ${e.path.length > 60 ? `${e.path.slice(0, 57)}...` : e.path.padEnd(60)} ${status} ${c('2', ms)}${tail}\n`,
    );
  });
  agent.on('connection', (e) => {
    const ms = `${e.durationMs < 10 ? e.durationMs.toFixed(1) : Math.round(e.durationMs)} ms`;
    const outcome = e.error === undefined ? c('32', 'closed') : c('31', e.error.replace('BURROW_ERR_', ''));
    const tail = e.detail !== undefined ? `  ${c('2', e.detail)}` : '';
    write(`TCP     ${e.client.padEnd(24)} ${outcome} ${c('2', `${ms}, ${e.bytesIn} B in, ${e.bytesOut} B out`)}${tail}\n`);
  });
  agent.on('reconnecting', (e) => write(`${c('33', 'reconnecting')} in ${(e.delayMs / 1000).toFixed(1)} s (attempt ${e.attempt}): ${e.reason}\n`));
  agent.on('fatal', (err) => write(`${c('31', 'error')} ${err.code}: ${err.message}\n`));
}

function connectionLine(e: ConnectionEvent, c: (code: string, s: string) => string): string {
  const ms = `${e.durationMs < 10 ? e.durationMs.toFixed(1) : Math.round(e.durationMs)} ms`;
  const outcome = e.error === undefined ? c('32', 'closed') : c('31', e.error.replace('BURROW_ERR_', ''));
  const tail = e.detail !== undefined ? `  ${c('2', e.detail)}` : '';
  return `TCP     ${e.client.padEnd(24)} ${outcome} ${c('2', `${ms}, ${e.bytesIn} B in, ${e.bytesOut} B out`)}${tail}\n`;
}

/** A finished HTTP request or WebSocket as a --json line carries it (after "event", and "forward" under start). */
export function requestFields(e: RequestEvent): object {
  return {
    method: e.method,
    path: e.path,
    status: e.status,
    durationMs: Math.round(e.durationMs * 10) / 10,
    ...(e.websocket ? { websocket: true } : {}),
    ...(e.error !== undefined ? { error: e.error, detail: e.detail } : {}),
  };
}

/** A finished TCP connection as a --json line carries it (after "event", and "forward" under start). */
export function connectionFields(e: ConnectionEvent): object {
  return {
    client: e.client,
    durationMs: Math.round(e.durationMs * 10) / 10,
    bytesIn: e.bytesIn,
    bytesOut: e.bytesOut,
    ...(e.error !== undefined ? { error: e.error, detail: e.detail } : {}),
  };
}

/** The `burrow connect` command that reaches this share (the secret only when it was generated here). */
export function connectCommandFor(command: Pick<ShareCommand, 'name' | 'relay'>, secret: string | undefined): string {
  return `burrow connect ${command.name} --relay ${command.relay} --listen 127.0.0.1:<port> --secret ${secret ?? '<the secret you set>'}`;
}

/** `burrow share tcp`: the share, its targets and, once, how to connect to it; then a line per connection. */
export function attachShareOutput(
  agent: Agent,
  info: { readonly command: ShareCommand; readonly secret: string | undefined },
  write: Write,
  color: boolean,
): void {
  const { command } = info;
  const c = (code: string, s: string): string => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
  const targets = [command.target, ...command.allow].map(targetHostPort);
  const connectWith = connectCommandFor(command, info.secret);
  agent.on('online', (e) => {
    if (command.json) {
      write(
        `${JSON.stringify({ event: e.reconnected ? 'reconnected' : 'online', share: e.share, label: e.label, targets, ...(e.reconnected ? {} : { connect: connectWith }) })}\n`,
      );
      return;
    }
    if (e.reconnected) {
      write(`${c('32', 'reconnected')}  share ${e.share}\n`);
      return;
    }
    write(`${c('1;32', 'burrow share online')}\n`);
    write(`  share ${c('1', e.share ?? command.name)}  →  ${targets.join(', ')}\n`);
    write(`  connect with: ${c('1', connectWith)}\n`);
    if (info.secret !== undefined) write(`  ${c('2', 'the secret is shown once; keep it, or set your own with --secret / BURROW_SHARE_SECRET')}\n`);
    write('\n');
  });
  attachCommon(agent, command.json, write, c);
}

/** `burrow connect`: where it listens, which share it reaches; then a line per connection. */
export function attachConnectOutput(connector: Connector, command: ConnectCommand, write: Write, color: boolean): void {
  const c = (code: string, s: string): string => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
  connector.on('online', (e) => {
    const a = connector.address();
    const listen = a === undefined ? `${command.listen.host}:${command.listen.port}` : hostPort(a.host, a.port);
    if (command.json) {
      write(
        `${JSON.stringify({ event: e.reconnected ? 'reconnected' : 'online', share: command.share, listen, ...(command.target !== undefined ? { target: command.target } : {}) })}\n`,
      );
      return;
    }
    if (e.reconnected) {
      write(`${c('32', 'reconnected')}  ${listen}  →  share ${command.share}\n`);
      return;
    }
    write(`${c('1;32', 'burrow connect online')}\n`);
    write(`  ${c('1', `tcp://${listen}`)}  →  share ${command.share}${command.target !== undefined ? ` (${command.target})` : ''}\n\n`);
  });
  attachCommon(connector, command.json, write, c);
}

function attachCommon(worker: Pick<Agent, 'on'> | Pick<Connector, 'on'>, json: boolean, write: Write, c: (code: string, s: string) => string): void {
  const w = worker as Pick<Agent, 'on'>;
  w.on('connection', (e) => write(json ? `${JSON.stringify({ event: 'connection', ...connectionFields(e) })}\n` : connectionLine(e, c)));
  w.on('reconnecting', (e) =>
    write(
      json
        ? `${JSON.stringify({ event: 'reconnecting', attempt: e.attempt, delayMs: e.delayMs, reason: e.reason })}\n`
        : `${c('33', 'reconnecting')} in ${(e.delayMs / 1000).toFixed(1)} s (attempt ${e.attempt}): ${e.reason}\n`,
    ),
  );
  w.on('fatal', (err) =>
    write(json ? `${JSON.stringify({ event: 'error', code: err.code, message: err.message })}\n` : `${c('31', 'error')} ${err.code}: ${err.message}\n`),
  );
}
