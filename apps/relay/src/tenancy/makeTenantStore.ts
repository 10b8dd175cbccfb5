/**
 * The tenant store a relay runs on, from its config (as makeBus picks the bus): Redis
 * (standalone or cluster) when configured, shared by the fleet; else a FileTenantStore in
 * --data-dir, or in memory without one.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { RelayConfig } from '../config';
import { FileTenantStore } from './fileStore';
import { RedisTenantStore } from './redisStore';
import type { TenantStore } from './types';

export function makeTenantStore(config: RelayConfig, log: FastifyBaseLogger): TenantStore {
  if (config.redisUrl !== undefined || config.redisCluster.length > 0) {
    let lastError = '';
    return new RedisTenantStore({
      ...(config.redisUrl !== undefined ? { url: config.redisUrl } : { cluster: config.redisCluster }),
      onError: (err) => {
        if (err.message === lastError) return;
        lastError = err.message;
        log.warn({ err: err.message }, 'Redis tenant store error');
      },
    });
  }
  // Throws DataDirError (exit 2 in main.ts) when tenants.json is damaged.
  return new FileTenantStore(config.dataDir !== undefined ? { dataDir: config.dataDir } : {});
}
