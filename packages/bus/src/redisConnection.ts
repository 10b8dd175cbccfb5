/**
 * What every burrow Redis client shares: reconnect forever with a capped backoff, cluster seeds
 * parsed once, URLs without passwords in messages, and bounded waits.
 */
import type { Cluster, Redis } from 'ioredis';

/** Reconnect backoff: 50 ms, 100 ms, … capped at 1 s, forever. */
export const redisRetryStrategy = (times: number): number => Math.min(times * 50, 1000);

/** host:port (IPv6 in brackets) of a cluster seed. */
export function parseClusterSeed(seed: string): { host: string; port: number } {
  const i = seed.lastIndexOf(':');
  if (i <= 0) throw new TypeError(`cluster seed ${seed} is not host:port`);
  const port = Number(seed.slice(i + 1));
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new TypeError(`cluster seed ${seed} has no valid port`);
  return { host: seed.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port };
}

/** The URL without its password, for messages. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return 'the configured Redis URL';
  }
}

/** Resolves once the client is ready (at once if it is). */
export function waitReady(client: Redis | Cluster): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise<void>((resolve) => client.once('ready', () => resolve()));
}

/** `promise`, or a rejection with message() after `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message())), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function errorOf(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
