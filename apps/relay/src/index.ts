/** @burrow/relay: build and run a relay from code (tests, embedding). */
export { AGENT_CONNECT_PATH, buildRelay, MAX_AGENT_MESSAGE_BYTES, type Relay, type RelayDeps, type RelayStats } from './buildRelay';
export { ConfigError, parseRelayConfig, RELAY_OPTIONS, type RelayConfig, relayConfig, relayHelp } from './config';
export { makeHostRouter } from './hostRouter';
export { RELAY_VERSION } from './version';
