/**
 * Library entry: `const tunnel = await connect({ to: 3000 })` opens a tunnel and resolves once
 * it is online, with its public URL and a close().
 */
import type { AccessRules, KeyPair } from '@burrow/protocol';
import { Agent, type OnlineEvent } from './agent';
import { defaultKeyPath, loadOrCreateKey } from './keyStore';
import { parseTarget, parseTcpTarget } from './localTarget';

export interface ConnectOptions {
  /** Local app: a port, host:port or http(s) URL. */
  readonly to: number | string;
  /** Relay base URL. Default: BURROW_RELAY, else http://localhost:8080. */
  readonly relay?: string;
  /** Key to use; default: the key file (created on first use). */
  readonly keyPair?: KeyPair;
  /** Key file; default $BURROW_HOME/key.json or ~/.config/burrow/key.json. */
  readonly keyFile?: string;
  readonly subdomain?: string;
  readonly session?: string;
  readonly hostHeader?: string;
  readonly deadAfterMs?: number;
  readonly reconnectInitialMs?: number;
  readonly reconnectMaxMs?: number;
  /** Reject if not online within this long (default 30 s). */
  readonly timeoutMs?: number;
  /** Visitor access rules the relay enforces, e.g. accessRulesFrom({ basicAuth: ['user:pass'] }). */
  readonly access?: AccessRules;
  /** Tenant token. Default: BURROW_TOKEN, if set. */
  readonly token?: string;
  /** A TCP tunnel: `to` is a port or host:port, and the relay gives a public TCP port (tunnel.tcpUrl). */
  readonly tcp?: boolean;
}

export interface Tunnel {
  readonly url: string;
  readonly label: string;
  readonly subdomainUrl?: string;
  /** tcp://<host>:<port> of a TCP tunnel. */
  readonly tcpUrl?: string;
  /** Events: request, reconnecting, online (again), offline, fatal, closed. */
  readonly agent: Agent;
  close(): Promise<void>;
}

export async function connect(options: ConnectOptions): Promise<Tunnel> {
  const keyPair = options.keyPair ?? loadOrCreateKey(options.keyFile ?? defaultKeyPath()).keyPair;
  const token = options.token ?? process.env.BURROW_TOKEN;
  const agent = new Agent({
    relay: options.relay ?? process.env.BURROW_RELAY ?? 'http://localhost:8080',
    target: options.tcp === true ? parseTcpTarget(options.to) : parseTarget(options.to),
    ...(options.tcp === true ? { tcp: true } : {}),
    keyPair,
    ...(options.subdomain !== undefined ? { subdomain: options.subdomain } : {}),
    ...(options.session !== undefined ? { session: options.session } : {}),
    ...(options.hostHeader !== undefined ? { hostHeader: options.hostHeader } : {}),
    ...(options.deadAfterMs !== undefined ? { deadAfterMs: options.deadAfterMs } : {}),
    ...(options.reconnectInitialMs !== undefined ? { reconnectInitialMs: options.reconnectInitialMs } : {}),
    ...(options.reconnectMaxMs !== undefined ? { reconnectMaxMs: options.reconnectMaxMs } : {}),
    ...(options.access !== undefined ? { access: options.access } : {}),
    ...(token !== undefined && token !== '' ? { token } : {}),
  });
  const online = await new Promise<OnlineEvent>((resolve, reject) => {
    const timeoutMs = options.timeoutMs ?? 30_000;
    let lastReason = '';
    const onReconnecting = (e: { reason: string }): void => {
      lastReason = e.reason;
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      agent.off('online', onOnline);
      agent.off('fatal', onFatal);
      agent.off('reconnecting', onReconnecting);
    };
    const onOnline = (e: OnlineEvent): void => {
      cleanup();
      resolve(e);
    };
    const onFatal = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const timer = setTimeout(() => {
      cleanup();
      void agent.close();
      reject(new Error(`tunnel not online within ${timeoutMs} ms${lastReason !== '' ? `: ${lastReason}` : ''}`));
    }, timeoutMs);
    agent.on('online', onOnline);
    agent.on('fatal', onFatal);
    agent.on('reconnecting', onReconnecting);
    agent.start();
  });
  return {
    url: online.subdomainUrl ?? online.url,
    label: online.label,
    ...(online.subdomainUrl !== undefined ? { subdomainUrl: online.subdomainUrl } : {}),
    ...(online.tcpUrl !== undefined ? { tcpUrl: online.tcpUrl } : {}),
    agent,
    close: () => agent.close(),
  };
}
