/** @burrow/bus: frame delivery between relay nodes and the label registry. */
export * from './bus';
export { BATCH_FORMAT, BusCodecError, decodeBatch, encodeBatch, encodedSize } from './busCodec';
export { keySlot } from './keySlot';
export * from './memoryBus';
export { RedisBus, type RedisBusOptions, type RedisBusStats, type RedisClient } from './redisBus';
export { errorOf, parseClusterSeed, redactRedisUrl, redisRetryStrategy, waitReady, withTimeout } from './redisConnection';
export { RedisRegistry } from './redisRegistry';
