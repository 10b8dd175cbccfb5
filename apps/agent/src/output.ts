/**
 * What the CLI prints: a human view (URL, then a line per request, reconnect notices) or one
 * JSON object per line with --json.
 */
import type { Agent } from './agent';
import type { LocalTarget } from './localTarget';

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
  agent.on('connection', (e) =>
    out({
      event: 'connection',
      client: e.client,
      durationMs: Math.round(e.durationMs * 10) / 10,
      bytesIn: e.bytesIn,
      bytesOut: e.bytesOut,
      ...(e.error !== undefined ? { error: e.error, detail: e.detail } : {}),
    }),
  );
  agent.on('request', (e) =>
    out({
      event: 'request',
      method: e.method,
      path: e.path,
      status: e.status,
      durationMs: Math.round(e.durationMs * 10) / 10,
      ...(e.websocket ? { websocket: true } : {}),
      ...(e.error !== undefined ? { error: e.error, detail: e.detail } : {}),
    }),
  );
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
