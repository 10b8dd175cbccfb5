import { DEFAULT_STREAM_WINDOW_BYTES } from '@burrow/protocol';
import { ONE_NODE_STREAM_WINDOW_BYTES, parseRelayConfig, type RelayConfig, relayConfig } from '../src/config';

const parse = (argv: string[], env: Record<string, string> = {}): RelayConfig => {
  const r = parseRelayConfig(argv, env);
  if (r.kind !== 'config') throw new Error('expected a configuration');
  return r.config;
};

describe('per-stream window default', () => {
  test('one node (in-memory bus): 1 MiB, larger than the protocol default', () => {
    expect(ONE_NODE_STREAM_WINDOW_BYTES).toBe(1024 * 1024);
    expect(ONE_NODE_STREAM_WINDOW_BYTES).toBeGreaterThan(DEFAULT_STREAM_WINDOW_BYTES);
    expect(parse([]).streamWindowBytes).toBe(ONE_NODE_STREAM_WINDOW_BYTES);
    expect(relayConfig().streamWindowBytes).toBe(ONE_NODE_STREAM_WINDOW_BYTES);
  });

  test('on Redis (URL or cluster, flag or env): the protocol default, which bounds subscriber lag', () => {
    expect(parse(['--redis', 'redis://127.0.0.1:6379']).streamWindowBytes).toBe(DEFAULT_STREAM_WINDOW_BYTES);
    expect(parse([], { BURROW_REDIS_URL: 'redis://127.0.0.1:6379' }).streamWindowBytes).toBe(DEFAULT_STREAM_WINDOW_BYTES);
    expect(parse(['--redis-cluster', '127.0.0.1:7000,127.0.0.1:7001']).streamWindowBytes).toBe(DEFAULT_STREAM_WINDOW_BYTES);
    expect(relayConfig({ redisUrl: 'redis://127.0.0.1:6379' }).streamWindowBytes).toBe(DEFAULT_STREAM_WINDOW_BYTES);
  });

  test('an explicit window wins either way', () => {
    expect(parse(['--stream-window-bytes', '65536']).streamWindowBytes).toBe(65536);
    expect(parse(['--redis', 'redis://127.0.0.1:6379', '--stream-window-bytes', '2097152']).streamWindowBytes).toBe(2097152);
    expect(relayConfig({ redisUrl: 'redis://127.0.0.1:6379', streamWindowBytes: 65536 }).streamWindowBytes).toBe(65536);
  });
});
