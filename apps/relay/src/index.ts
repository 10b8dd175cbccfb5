/** @burrow/relay: build and run a relay from code (tests, embedding). */
export { AGENT_CONNECT_PATH, buildRelay, MAX_AGENT_MESSAGE_BYTES, type Relay, type RelayDeps, type RelayStats } from './buildRelay';
export { ConfigError, parseRelayConfig, RELAY_OPTIONS, type RelayConfig, relayConfig, relayHelp } from './config';
export { makeHostRouter } from './hostRouter';
export { FileTenantStore } from './tenancy/fileStore';
export { RedisTenantStore } from './tenancy/redisStore';
export type { LiveTunnel, Tenant, TenantQuotas, TenantStore } from './tenancy/types';
export { RELAY_VERSION } from './version';
