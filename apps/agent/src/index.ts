/** @burrow/agent: `connect()` for programs, `Agent` for full control. */
export { Agent, type AgentOptions, connectUrl, type OnlineEvent, type ReconnectingEvent } from './agent';
export { type Command, parseAgentArgs, USAGE, UsageError } from './cli';
export { type ConnectOptions, connect, type Tunnel } from './connect';
export { Connector, type ConnectorEvents, type ConnectorOptions, ListenError } from './connector';
export { defaultKeyPath, KeyFileError, type LoadedKey, loadOrCreateKey } from './keyStore';
export type { RequestEvent } from './localForward';
export { type LocalTarget, parseTarget, parseTcpTarget, TargetError } from './localTarget';
export type { ConnectionEvent } from './localTcp';
export { AGENT_VERSION } from './version';
