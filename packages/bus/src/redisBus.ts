/**
 * Bus over Redis: every node listens on its own channel, frames travel as binary batches
 * (busCodec), and the label registry lives in Redis keys changed by Lua scripts (redisRegistry).
 *
 * Standalone (`url`): SUBSCRIBE/PUBLISH on a dedicated subscriber connection plus a command
 * connection. Cluster (`cluster`): sharded pub/sub (SSUBSCRIBE/SPUBLISH, Redis 7) through the
 * ioredis Cluster `shardedSubscribers` option; each node's channel `<prefix>{node:<id>}` is
 * hash-tagged so different nodes spread over the shards.
 *
 * Startup needs Redis (connect() fails with BURROW_ERR_BUS_UNAVAILABLE after connectTimeoutMs);
 * later outages are survived: ioredis reconnects forever, the channel is subscribed again,
 * and meanwhile registry calls reject at once and publishes are reported undelivered ('bus-down').
 * A connection that goes silent without closing (a blackholed route, a dead NAT entry) is found by
 * a PING every healthCheckMs and dropped when it answers nothing for as long, then redialled: a
 * subscriber connection otherwise never notices, and Redis would keep counting it as listening.
 * Messages published to this node meanwhile were lost without their senders knowing, so after a
 * silent subscriber the node stays unsubscribed for rejoinDelayMs: long enough for every other node's
 * probe (absentNodes) to see it gone and end the streams those messages belonged to.
 */
import { BurrowError } from '@burrow/protocol';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Bus, BusHandlers, BusMessage, BusStats, UndeliveredReason } from './bus';
import { decodeBatch, encodeBatch, encodedSize } from './busCodec';
import { keySlot } from './keySlot';
import { errorOf, parseClusterSeed, redactRedisUrl, redisRetryStrategy, waitReady, withTimeout } from './redisConnection';
import { defineRegistryScripts, REGISTRY_SCRIPTS, RedisRegistry } from './redisRegistry';

export interface RedisBusOptions {
  /** This relay node's id; other nodes publish to it by this id. */
  readonly nodeId: string;
  /** Standalone Redis: redis://[user:pass@]host:port[/db] or rediss://… (TLS). */
  readonly url?: string;
  /** Redis Cluster: seed nodes as host:port (Redis 7+, sharded pub/sub). */
  readonly cluster?: readonly string[];
  /** Lease period of claimed labels (Redis PX); holders renew well within it. Default 10 s. */
  readonly leaseTtlMs?: number;
  /** How long a released or expired label is reported offline rather than unknown. Default 24 h. */
  readonly offlineMemoryMs?: number;
  /** Most friendly names bound fleet-wide; a new one beyond fails with BURROW_ERR_NAME_LIMIT. Default 100 000. */
  readonly maxNames?: number;
  /** Prefix of every key and channel. Default 'burrow:'. */
  readonly keyPrefix?: string;
  /** Connection and decoding problems, for logging. */
  readonly onError?: (err: Error) => void;
  /** How long startup (connect/subscribe) waits for Redis before failing. Default 5 s. */
  readonly connectTimeoutMs?: number;
  /** A command without an answer for this long fails (and reports BUS_UNAVAILABLE). Default 1 s. */
  readonly commandTimeoutMs?: number;
  /** A pending batch to one node is published as soon as it reaches this many bytes. Default 256 KiB. */
  readonly maxBatchBytes?: number;
  /**
   * Every Redis connection is PINGed this often, and one that has answered nothing for this long
   * while a command waits is dropped and redialled (a silent connection). Default 1 s.
   */
  readonly healthCheckMs?: number;
  /**
   * After its subscriber connection went silent and was replaced, this node subscribes again only
   * after this long, so that other nodes' periodic absentNodes() probes see it gone. Set it above
   * their probe period. Default 2 s.
   */
  readonly rejoinDelayMs?: number;
}

/** BusStats plus Redis specifics. */
export interface RedisBusStats extends BusStats {
  /** Received Redis messages that could not be decoded (skipped; also counted in errors). */
  readonly badBatches: number;
  /** PUBLISH/SPUBLISH commands sent (one per batch). */
  readonly batches: number;
}

const DEFAULT_LEASE_TTL_MS = 10_000;
const DEFAULT_OFFLINE_MEMORY_MS = 24 * 60 * 60 * 1000;
const DEFAULT_MAX_NAMES = 100_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
const DEFAULT_COMMAND_TIMEOUT_MS = 1000;
const DEFAULT_MAX_BATCH_BYTES = 256 * 1024;
const DEFAULT_HEALTH_CHECK_MS = 1000;
const DEFAULT_REJOIN_DELAY_MS = 2000;

interface Pending {
  messages: BusMessage[];
  bytes: number;
}

export type RedisClient = Redis | Cluster;
type Client = RedisClient;

function payloadBytes(message: BusMessage): number {
  return 'frame' in message ? message.frame.payload.length : 0;
}

export class RedisBus implements Bus {
  readonly nodeId: string;
  readonly registry: RedisRegistry;
  readonly leaseTtlMs: number;
  private readonly keyPrefix: string;
  private readonly channel: string;
  private readonly channelBuf: Buffer;
  private readonly where: string;
  private readonly connectTimeoutMs: number;
  private readonly commandTimeoutMs: number;
  private readonly maxBatchBytes: number;
  private readonly healthCheckMs: number;
  private healthTimer: NodeJS.Timeout | undefined;
  private readonly rejoinDelayMs: number;
  private rejoinTimer: NodeJS.Timeout | undefined;
  /** The subscriber's health PING is unanswered (since when). */
  private subPingSentAt: number | undefined;
  /** The subscriber connection closed while its PING was unanswered: it had gone silent. */
  private subWentSilent = false;
  private readonly onError: (err: Error) => void;

  private cmd: Client | undefined;
  /** Standalone subscriber connection (cluster mode subscribes through cmd's sharded subscribers). */
  private sub: Redis | undefined;
  private starting: Promise<void> | undefined;
  private started = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  private handlers: BusHandlers | undefined;
  /** The channel subscription is live (standalone: confirmed after each reconnect). */
  private listening = false;
  /** subscribe() succeeded: the subscriber connection subscribes again after each reconnect. */
  private subscribed = false;
  /** Last up state reported (or the initial one). */
  private reportedUp = false;
  private lastErrorMessage = '';

  private readonly pending = new Map<string, Pending>();
  private flushScheduled = false;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly counts = { published: 0, publishedBytes: 0, received: 0, receivedBytes: 0, undelivered: 0, errors: 0, badBatches: 0, batches: 0 };

  constructor(private readonly options: RedisBusOptions) {
    if (typeof options.nodeId !== 'string' || options.nodeId.length === 0) throw new TypeError('RedisBus needs a nodeId');
    if ((options.url === undefined) === (options.cluster === undefined || options.cluster.length === 0)) {
      throw new TypeError('RedisBus needs exactly one of url (standalone Redis) or cluster (seed host:port list)');
    }
    this.nodeId = options.nodeId;
    this.leaseTtlMs = options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
    this.keyPrefix = options.keyPrefix ?? 'burrow:';
    this.channel = this.channelOf(this.nodeId);
    this.channelBuf = Buffer.from(this.channel, 'utf8');
    this.where = options.url !== undefined ? redactRedisUrl(options.url) : `cluster ${options.cluster?.join(',')}`;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    this.maxBatchBytes = options.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
    this.healthCheckMs = options.healthCheckMs ?? DEFAULT_HEALTH_CHECK_MS;
    this.rejoinDelayMs = options.rejoinDelayMs ?? DEFAULT_REJOIN_DELAY_MS;
    this.onError = options.onError ?? (() => {});
    this.registry = new RedisRegistry(
      { command: (what, fn) => this.command(what, fn) },
      {
        keyPrefix: this.keyPrefix,
        leaseTtlMs: this.leaseTtlMs,
        offlineMemoryMs: options.offlineMemoryMs ?? DEFAULT_OFFLINE_MEMORY_MS,
        maxNames: options.maxNames ?? DEFAULT_MAX_NAMES,
      },
    );
  }

  /** The channel a node listens on. Hash-tagged per node: in cluster mode, nodes spread over the shards. */
  channelOf(nodeId: string): string {
    return `${this.keyPrefix}{node:${nodeId}}`;
  }

  /** True in cluster mode. */
  get isCluster(): boolean {
    return this.options.cluster !== undefined;
  }

  // ---------------------------------------------------------------- connections

  /**
   * Connects the command and subscriber connections. Idempotent; subscribe() and the first
   * registry call do it too. Rejects with BURROW_ERR_BUS_UNAVAILABLE if Redis does not answer
   * within connectTimeoutMs (then a later call tries again).
   */
  connect(): Promise<void> {
    if (this.closed) return Promise.reject(new BurrowError('BURROW_ERR_BUS_UNAVAILABLE', `the Redis bus of node ${this.nodeId} is closed`));
    this.starting ??= this.start().catch((err) => {
      this.starting = undefined;
      throw err;
    });
    return this.starting;
  }

  private async start(): Promise<void> {
    const base: RedisOptions = {
      lazyConnect: true,
      retryStrategy: redisRetryStrategy,
      connectTimeout: Math.min(this.connectTimeoutMs, 2000),
      connectionName: `burrow-${this.nodeId}`,
      // ioredis keeps a timer this long after disconnect() of an already failed socket (it holds the process open).
      disconnectTimeout: 200,
      // A command (a health PING at least, see healthCheck) with no byte back for this long: the
      // connection is silent, not slow; ioredis destroys it and redials.
      socketTimeout: this.healthCheckMs,
    };
    const commandOptions: RedisOptions = {
      ...base,
      // Fail fast while Redis is away: nothing queues, in-flight commands fail when the socket closes.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: this.commandTimeoutMs,
      enableAutoPipelining: true,
    };
    let cmd: Client;
    const waits: Promise<void>[] = [];
    if (this.options.cluster !== undefined) {
      const cluster = new Cluster(
        this.options.cluster.map((seed) => parseClusterSeed(seed)),
        {
          lazyConnect: true,
          enableOfflineQueue: false,
          enableAutoPipelining: true,
          shardedSubscribers: true,
          clusterRetryStrategy: redisRetryStrategy,
          slotsRefreshTimeout: Math.min(this.connectTimeoutMs, 2000),
          redisOptions: {
            connectTimeout: commandOptions.connectTimeout,
            connectionName: commandOptions.connectionName,
            disconnectTimeout: base.disconnectTimeout,
            socketTimeout: base.socketTimeout,
            maxRetriesPerRequest: 0,
            autoResendUnfulfilledCommands: false,
            commandTimeout: this.commandTimeoutMs,
          },
        },
      );
      cluster.on('smessageBuffer', (channel: Buffer, message: Buffer) => this.onRedisMessage(channel, message));
      cluster.on('error', (err: Error) => this.connectionError(err));
      cluster.on('node error', (err: Error) => this.connectionError(err));
      cluster.on('ready', () => {
        for (const node of cluster.nodes('master')) this.loadScripts(node);
        this.updateUp();
      });
      cluster.on('close', () => this.updateUp());
      cluster.on('end', () => this.updateUp());
      cluster.on('+node', () => this.updateUp());
      cmd = cluster;
    } else {
      const url = this.options.url as string;
      const redis = new Redis(url, commandOptions);
      const sub = new Redis(url, { ...base, connectionName: `burrow-${this.nodeId}-sub`, autoResubscribe: false, enableOfflineQueue: true });
      redis.on('error', (err: Error) => this.connectionError(err));
      redis.on('ready', () => {
        this.loadScripts(redis);
        this.updateUp();
      });
      redis.on('close', () => this.updateUp());
      sub.on('error', (err: Error) => this.connectionError(err));
      sub.on('messageBuffer', (channel: Buffer, message: Buffer) => this.onRedisMessage(channel, message));
      sub.on('close', () => {
        this.listening = false;
        if (this.subPingSentAt !== undefined) this.subWentSilent = true;
        this.subPingSentAt = undefined;
        clearTimeout(this.rejoinTimer);
        this.updateUp();
      });
      sub.on('ready', () => {
        if (!this.subscribed || this.closed) return;
        if (!this.subWentSilent) {
          this.resubscribe(sub);
          return;
        }
        // Messages sent to us while it was silent are lost: stay away until the other nodes have seen it.
        this.rejoinTimer = setTimeout(() => {
          this.subWentSilent = false;
          if (sub.status === 'ready' && !this.closed) this.resubscribe(sub);
        }, this.rejoinDelayMs);
        this.rejoinTimer.unref();
      });
      this.sub = sub;
      waits.push(waitReady(sub));
      cmd = redis;
    }
    defineRegistryScripts(cmd);
    this.cmd = cmd;
    waits.push(waitReady(cmd));
    cmd.connect().catch(() => {}); // errors surface as 'error' events; ioredis keeps retrying
    this.sub?.connect().catch(() => {});
    try {
      await withTimeout(Promise.all(waits), this.connectTimeoutMs, () => `no answer within ${this.connectTimeoutMs} ms`);
    } catch (err) {
      const sub = this.sub;
      this.cmd = undefined;
      this.sub = undefined;
      cmd.disconnect();
      sub?.disconnect();
      const last = this.lastErrorMessage !== '' ? ` (last error: ${this.lastErrorMessage})` : '';
      throw new BurrowError('BURROW_ERR_BUS_UNAVAILABLE', `cannot reach Redis at ${this.where}: ${errorOf(err).message}${last}`);
    }
    if (this.closed) {
      cmd.disconnect();
      this.sub?.disconnect();
      throw new BurrowError('BURROW_ERR_BUS_UNAVAILABLE', `the Redis bus of node ${this.nodeId} was closed while connecting`);
    }
    this.started = true;
    this.reportedUp = this.computeUp();
    this.healthTimer = setInterval(() => this.healthCheck(), this.healthCheckMs);
    this.healthTimer.unref();
  }

  /**
   * PINGs every ready connection (the subscriber too: PING is allowed in subscriber mode), so that
   * socketTimeout sees a silent one even when nothing else is being sent on it.
   */
  private healthCheck(): void {
    if (this.closed) return;
    const cmd = this.cmd;
    const clients: Redis[] = cmd instanceof Cluster ? cmd.nodes('all') : cmd !== undefined ? [cmd] : [];
    for (const c of clients) if (c.status === 'ready') c.ping().catch(() => {});
    const sub = this.sub;
    if (sub?.status === 'ready' && this.subPingSentAt === undefined) {
      this.subPingSentAt = Date.now();
      sub.ping().then(
        () => {
          if (this.sub === sub) this.subPingSentAt = undefined;
        },
        () => {},
      );
    }
  }

  /**
   * Loads the registry scripts into a (re)started Redis, so a burst of calls (renewing thousands of
   * leases) does not each hit NOSCRIPT and resend the script. ioredis still falls back to EVAL.
   */
  private loadScripts(client: Redis): void {
    for (const { lua } of Object.values(REGISTRY_SCRIPTS)) client.script('LOAD', lua).catch(() => {});
  }

  private resubscribe(sub: Redis): void {
    sub.subscribe(this.channel).then(
      () => {
        this.listening = true;
        this.updateUp();
      },
      (err: unknown) => this.connectionError(errorOf(err)), // the next 'ready' tries again
    );
  }

  private connectionError(err: Error): void {
    this.counts.errors++;
    if (this.closed) return;
    // ioredis reports every failed reconnect attempt; log each distinct problem once per outage.
    if (err.message === this.lastErrorMessage) return;
    this.lastErrorMessage = err.message;
    this.onError(new Error(`Redis bus (node ${this.nodeId}, ${this.where}): ${err.message}`, { cause: err }));
  }

  private commandReady(): boolean {
    return this.cmd !== undefined && this.cmd.status === 'ready';
  }

  private computeUp(): boolean {
    if (this.closed || !this.started || !this.commandReady()) return false;
    if (this.handlers === undefined) return this.isCluster || this.sub?.status === 'ready';
    return this.listening;
  }

  isUp(): boolean {
    return this.computeUp();
  }

  private updateUp(): void {
    if (!this.started || this.closed) return;
    const up = this.computeUp();
    if (up === this.reportedUp) return;
    this.reportedUp = up;
    if (up) {
      this.lastErrorMessage = '';
    } else {
      this.counts.errors++;
      this.onError(new Error(`Redis bus (node ${this.nodeId}): lost the connection to ${this.where}; reconnecting`));
      this.flushPending(); // report what waits as bus-down now rather than at the next tick
    }
    try {
      this.handlers?.connectionChanged?.(up);
    } catch (err) {
      this.onError(errorOf(err));
    }
  }

  /**
   * Runs commands on the bus's Redis connection (the registry, and relay state kept beside it such
   * as tenant counters); every failure to reach Redis becomes BURROW_ERR_BUS_UNAVAILABLE.
   */
  async command<T>(what: string, fn: (client: Client) => Promise<T>): Promise<T> {
    if (!this.started) await this.connect();
    const cmd = this.cmd;
    if (this.closed || cmd === undefined) throw new BurrowError('BURROW_ERR_BUS_UNAVAILABLE', `the Redis bus of node ${this.nodeId} is closed`);
    if (cmd.status !== 'ready') {
      this.counts.errors++;
      throw new BurrowError('BURROW_ERR_BUS_UNAVAILABLE', `Redis at ${this.where} is unreachable (connection ${cmd.status}); ${what} failed`);
    }
    try {
      return await fn(cmd);
    } catch (err) {
      if (err instanceof BurrowError) throw err;
      this.counts.errors++;
      throw new BurrowError('BURROW_ERR_BUS_UNAVAILABLE', `Redis ${what} failed at ${this.where}: ${errorOf(err).message}`);
    }
  }

  // ---------------------------------------------------------------- publish / subscribe

  publish(nodeId: string, message: BusMessage): void {
    this.counts.published++;
    this.counts.publishedBytes += payloadBytes(message);
    if (nodeId === this.nodeId) {
      const handlers = this.handlers;
      if (handlers === undefined || this.closed) {
        this.reportLater(nodeId, [message], 'no-listener');
        return;
      }
      this.counts.received++;
      this.counts.receivedBytes += payloadBytes(message);
      handlers.message(message);
      return;
    }
    const size = encodedSize(message); // throws on unencodable ids, inside publish(), like a bad argument
    let batch = this.pending.get(nodeId);
    if (batch === undefined) {
      batch = { messages: [], bytes: 1 };
      this.pending.set(nodeId, batch);
    }
    batch.messages.push(message);
    batch.bytes += size;
    if (batch.bytes >= this.maxBatchBytes) {
      this.pending.delete(nodeId);
      this.send(nodeId, batch.messages);
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flushPending();
      });
    }
  }

  private flushPending(): void {
    for (const [nodeId, batch] of this.pending) {
      this.pending.delete(nodeId);
      this.send(nodeId, batch.messages);
    }
  }

  private send(nodeId: string, messages: BusMessage[]): void {
    const cmd = this.cmd;
    if (cmd === undefined || this.closed || !this.started || cmd.status !== 'ready') {
      this.reportLater(nodeId, messages, 'bus-down');
      return;
    }
    const channel = this.channelOf(nodeId);
    const payload = encodeBatch(messages);
    this.counts.batches++;
    const sent = (cmd instanceof Cluster ? cmd.spublish(channel, payload) : cmd.publish(channel, payload)) as Promise<unknown>;
    const done = sent.then(
      (receivers) => {
        if (Number(receivers) === 0) this.report(nodeId, messages, 'no-listener');
      },
      (err: unknown) => {
        this.counts.errors++;
        this.report(nodeId, messages, 'bus-down');
        if (!this.closed) this.connectionError(errorOf(err));
      },
    );
    this.inFlight.add(done);
    void done.finally(() => this.inFlight.delete(done));
  }

  private reportLater(nodeId: string, messages: readonly BusMessage[], reason: UndeliveredReason): void {
    queueMicrotask(() => this.report(nodeId, messages, reason));
  }

  private report(nodeId: string, messages: readonly BusMessage[], reason: UndeliveredReason): void {
    this.counts.undelivered += messages.length;
    try {
      this.handlers?.undelivered?.(nodeId, messages, reason);
    } catch (err) {
      this.onError(errorOf(err));
    }
  }

  private onRedisMessage(channel: Buffer, message: Buffer): void {
    const handlers = this.handlers;
    if (handlers === undefined || this.closed || !channel.equals(this.channelBuf)) return;
    let messages: BusMessage[];
    try {
      messages = decodeBatch(message);
    } catch (err) {
      this.counts.errors++;
      this.counts.badBatches++;
      this.onError(new Error(`Redis bus (node ${this.nodeId}): skipped an undecodable message of ${message.length} bytes: ${errorOf(err).message}`));
      return;
    }
    for (const m of messages) {
      this.counts.received++;
      this.counts.receivedBytes += payloadBytes(m);
      try {
        handlers.message(m);
      } catch (err) {
        this.onError(errorOf(err));
      }
    }
  }

  async subscribe(handlers: BusHandlers): Promise<void> {
    if (this.handlers !== undefined) throw new Error('RedisBus.subscribe called twice');
    this.handlers = handlers;
    try {
      await this.connect();
      const cmd = this.cmd;
      if (cmd instanceof Cluster) {
        await withTimeout(cmd.ssubscribe(this.channel), this.connectTimeoutMs, () => `SSUBSCRIBE got no answer within ${this.connectTimeoutMs} ms`);
      } else {
        await withTimeout(
          (this.sub as Redis).subscribe(this.channel),
          this.connectTimeoutMs,
          () => `SUBSCRIBE got no answer within ${this.connectTimeoutMs} ms`,
        );
      }
      if (this.closed) throw new BurrowError('BURROW_ERR_BUS_UNAVAILABLE', `the Redis bus of node ${this.nodeId} was closed while subscribing`);
      this.listening = true;
      this.subscribed = true;
      this.reportedUp = this.computeUp();
    } catch (err) {
      this.handlers = undefined;
      if (err instanceof BurrowError) throw err;
      throw new BurrowError('BURROW_ERR_BUS_UNAVAILABLE', `cannot subscribe to ${this.channel} at ${this.where}: ${errorOf(err).message}`);
    }
  }

  async absentNodes(nodeIds: readonly string[]): Promise<Set<string>> {
    return this.command('absentNodes', async (cmd) => {
      const absent = new Set<string>();
      if (nodeIds.length === 0) return absent;
      const unique = [...new Set(nodeIds)];
      if (cmd instanceof Cluster) {
        // SHARDNUMSUB counts only the subscribers of the node asked: ask each channel's master.
        const byNode = new Map<string, string[]>();
        for (const id of unique) {
          const owner = cmd.slots[keySlot(this.channelOf(id))]?.[0];
          if (owner === undefined) throw new Error(`no cluster node serves the slot of ${this.channelOf(id)}`);
          byNode.set(owner, [...(byNode.get(owner) ?? []), id]);
        }
        const masters = new Map(cmd.nodes('master').map((n) => [`${n.options.host}:${n.options.port}`, n]));
        await Promise.all(
          [...byNode].map(async ([key, ids]) => {
            const node = masters.get(key);
            if (node === undefined) throw new Error(`cluster node ${key} is not connected`);
            const reply = (await node.call('PUBSUB', 'SHARDNUMSUB', ...ids.map((id) => this.channelOf(id)))) as Array<string | number>;
            ids.forEach((id, i) => {
              if (Number(reply[2 * i + 1]) === 0) absent.add(id);
            });
          }),
        );
      } else {
        const reply = (await cmd.call('PUBSUB', 'NUMSUB', ...unique.map((id) => this.channelOf(id)))) as Array<string | number>;
        unique.forEach((id, i) => {
          if (Number(reply[2 * i + 1]) === 0) absent.add(id);
        });
      }
      return absent;
    });
  }

  stats(): RedisBusStats {
    return { ...this.counts };
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    // Pending batches go out first (while the connections still work).
    this.flushPending();
    if (this.inFlight.size > 0)
      await withTimeout(Promise.allSettled([...this.inFlight]), this.commandTimeoutMs, () => 'publish flush timed out').catch(() => {});
    this.closed = true;
    clearInterval(this.healthTimer);
    clearTimeout(this.rejoinTimer);
    this.handlers = undefined;
    this.listening = false;
    await this.starting?.catch(() => {});
    const clients: Client[] = [this.cmd, this.sub].filter((c): c is Client => c !== undefined);
    this.cmd = undefined;
    this.sub = undefined;
    await Promise.all(
      clients.map(async (c) => {
        if (c.status === 'ready') {
          // QUIT unsubscribes too; fall back to dropping the socket if Redis does not answer.
          await withTimeout(c.quit(), this.commandTimeoutMs, () => 'QUIT timed out').catch(() => c.disconnect());
        } else {
          c.disconnect();
        }
      }),
    );
  }
}
