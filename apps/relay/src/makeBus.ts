/**
 * The bus a relay runs on, from its config: Redis (standalone or cluster) when configured,
 * else an in-memory bus of its own (one node; names persisted in --data-dir when set).
 */
import { type Bus, MemoryBus, MemoryHub, RedisBus } from '@burrow/bus';
import type { FastifyBaseLogger } from 'fastify';
import type { RelayConfig } from './config';
import { fileNameBindings } from './nameStore';
import { peerProbePeriodMs } from './peerWatch';

export function makeBus(config: RelayConfig, log: FastifyBaseLogger): Bus {
  if (config.redisUrl !== undefined || config.redisCluster.length > 0) {
    let lastError = '';
    return new RedisBus({
      nodeId: config.nodeId,
      ...(config.redisUrl !== undefined ? { url: config.redisUrl } : { cluster: config.redisCluster }),
      leaseTtlMs: config.leaseTtlMs,
      maxNames: config.maxNames,
      healthCheckMs: config.redisHealthMs,
      // After a silent subscriber, stay unsubscribed across two of the other nodes' probes (same lease TTL fleet-wide).
      rejoinDelayMs: 2 * peerProbePeriodMs(config.leaseTtlMs),
      onError: (err) => {
        // ioredis reports every failed reconnect attempt; one line per distinct error is enough.
        if (err.message === lastError) return;
        lastError = err.message;
        log.warn({ err: err.message }, 'Redis bus error');
      },
    });
  }
  return new MemoryBus(
    config.nodeId,
    new MemoryHub({
      maxNames: config.maxNames,
      leaseTtlMs: config.leaseTtlMs,
      ...(config.dataDir === undefined ? {} : { names: fileNameBindings(config.dataDir) }),
    }),
  );
}
