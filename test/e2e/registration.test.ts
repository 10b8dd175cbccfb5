import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeHello, decodeReason, decodeRegistered, type ErrorCode, encodeFrame, encodeJson, FrameType, labelFor, signRegistration } from '@burrow/protocol';
import Fastify from 'fastify';
import { cleanup, hostOf, newKey, RawAgent, request, startApp, startRelay, startTunnel, waitFor } from '../kit';

afterEach(cleanup);

async function expectRefused(agent: RawAgent, code: ErrorCode, close: number): Promise<string> {
  const err = decodeReason((await agent.next(FrameType.ERROR)).payload);
  expect(err.code).toBe(code);
  expect(await agent.closed()).toBe(close);
  return err.message;
}

describe('registration', () => {
  test('a valid registration gets the key-derived label and URL', async () => {
    const relay = await startRelay();
    const agent = await RawAgent.open(relay.url);
    const key = newKey();
    await agent.register(key, relay.url);
    const reg = decodeRegistered((await agent.next(FrameType.REGISTERED)).payload);
    expect(reg.label).toBe(labelFor(key.publicKey));
    expect(reg.label).toMatch(/^[a-z2-7]{52}$/);
    expect(reg.url).toBe(`http://${reg.label}.localhost:${relay.port}`);
  });

  test('a bad signature is refused with a coded error, then close', async () => {
    const relay = await startRelay();
    const agent = await RawAgent.open(relay.url);
    const hello = decodeHello((await agent.next(FrameType.HELLO)).payload);
    const good = signRegistration({ secretKey: newKey().secretKey, nonce: hello.nonce, audience: relay.url, nowMs: Date.now() });
    const other = signRegistration({ secretKey: newKey().secretKey, nonce: hello.nonce, audience: relay.url, nowMs: Date.now() });
    agent.send(encodeFrame(FrameType.REGISTER, 0, 0, encodeJson({ claims: good.claims, sig: other.sig })));
    await expectRefused(agent, 'BURROW_ERR_BAD_SIGNATURE', 4001);
  });

  test('a replayed nonce (a token from another connection) is refused', async () => {
    const relay = await startRelay();
    const first = await RawAgent.open(relay.url);
    const hello = decodeHello((await first.next(FrameType.HELLO)).payload);
    const key = newKey();
    const token = signRegistration({ secretKey: key.secretKey, nonce: hello.nonce, audience: relay.url, nowMs: Date.now() });
    first.send(encodeFrame(FrameType.REGISTER, 0, 0, encodeJson(token)));
    await first.next(FrameType.REGISTERED);
    const second = await RawAgent.open(relay.url);
    await second.next(FrameType.HELLO);
    second.send(encodeFrame(FrameType.REGISTER, 0, 0, encodeJson(token)));
    await expectRefused(second, 'BURROW_ERR_NONCE_REPLAYED', 4001);
  });

  test('an expired token is refused', async () => {
    const relay = await startRelay();
    const agent = await RawAgent.open(relay.url);
    await agent.register(newKey(), relay.url, { nowMs: Date.now() - 61_000 });
    expect(await expectRefused(agent, 'BURROW_ERR_TOKEN_EXPIRED', 4001)).toContain('clock');
  });

  test('a token for another relay is refused', async () => {
    const relay = await startRelay();
    const agent = await RawAgent.open(relay.url);
    await agent.register(newKey(), 'https://evil.example.com');
    expect(await expectRefused(agent, 'BURROW_ERR_WRONG_AUDIENCE', 4001)).toContain(`--relay ${relay.url}`);
  });

  test('the Host header a client sends does not widen the accepted audiences', async () => {
    const relay = await startRelay();
    // A rogue relay relaying our nonce to a victim agent would connect with its own name as Host.
    const agent = await RawAgent.open(relay.url, { host: 'rogue.example.net' });
    await agent.register(newKey(), 'https://rogue.example.net');
    await expectRefused(agent, 'BURROW_ERR_WRONG_AUDIENCE', 4001);
  });

  test('no registration within the deadline closes the socket', async () => {
    const relay = await startRelay({ registrationTimeoutMs: 100 });
    const agent = await RawAgent.open(relay.url);
    await agent.next(FrameType.HELLO);
    await expectRefused(agent, 'BURROW_ERR_REGISTRATION_TIMEOUT', 4008);
    expect(relay.relay.stats().sessions).toBe(0);
  });

  test('a friendly name is bound to the first key; another key is refused, the owner gets it back', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('shop'));
    const relay = await startRelay();
    const owner = newKey();
    const first = await startTunnel(relay.url, appPort, { keyPair: owner, subdomain: 'Shop' });
    expect(first.url).toBe(`http://shop.localhost:${relay.port}`);
    expect((await request(relay.port, `shop.localhost:${relay.port}`)).text).toBe('shop');
    await first.close();
    await waitFor(() => relay.relay.stats().sessions === 0, 3000, 'owner gone');
    // Offline name: 502, and nobody else can take it.
    expect((await request(relay.port, `shop.localhost:${relay.port}`)).status).toBe(502);
    await expect(startTunnel(relay.url, appPort, { keyPair: newKey(), subdomain: 'shop' })).rejects.toMatchObject({ code: 'BURROW_ERR_NAME_TAKEN' });
    const again = await startTunnel(relay.url, appPort, { keyPair: owner, subdomain: 'shop' });
    expect(again.url).toBe(first.url);
  });

  test('with --data-dir, name bindings survive a relay restart', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('kept'));
    const dataDir = mkdtempSync(join(tmpdir(), 'burrow-data-'));
    const owner = newKey();
    const first = await startRelay({ dataDir });
    const t = await startTunnel(first.url, appPort, { keyPair: owner, subdomain: 'kept' });
    await t.close();
    await first.relay.close();
    expect(readFileSync(join(dataDir, 'names.jsonl'), 'utf8')).toContain('"name":"kept"');
    const second = await startRelay({ dataDir });
    await expect(startTunnel(second.url, appPort, { keyPair: newKey(), subdomain: 'kept' })).rejects.toMatchObject({ code: 'BURROW_ERR_NAME_TAKEN' });
    // Known but offline after the restart: 502, not 404.
    expect((await request(second.port, `kept.localhost:${second.port}`)).status).toBe(502);
    const again = await startTunnel(second.url, appPort, { keyPair: owner, subdomain: 'kept' });
    expect((await request(second.port, hostOf(again.url))).text).toBe('kept');
  });

  test('--max-names bounds friendly names: a new one beyond it is refused, an owner keeps its own', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('n'));
    const relay = await startRelay({ maxNames: 1 });
    const owner = newKey();
    await startTunnel(relay.url, appPort, { keyPair: owner, subdomain: 'only' });
    await expect(startTunnel(relay.url, appPort, { keyPair: newKey(), subdomain: 'another' })).rejects.toMatchObject({ code: 'BURROW_ERR_NAME_LIMIT' });
    const again = await startTunnel(relay.url, appPort, { keyPair: owner, subdomain: 'only' });
    expect((await request(relay.port, hostOf(again.url))).text).toBe('n');
  });

  test('a corrupt names file stops the relay from starting, with the line named', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'burrow-data-'));
    writeFileSync(join(dataDir, 'names.jsonl'), '{"name":"a","key":"k"}\nnot json\n');
    await expect(startRelay({ dataDir })).rejects.toThrow('names.jsonl line 2 is not JSON');
  });

  test('an invalid friendly name is refused with a clear error', async () => {
    const relay = await startRelay();
    const agent = await RawAgent.open(relay.url);
    await agent.register(newKey(), relay.url, { subdomain: '-bad-' });
    expect(await expectRefused(agent, 'BURROW_ERR_INVALID_NAME', 4009)).toContain('DNS label');
  });

  test('sessions of one key get distinct stable labels', async () => {
    const { port: appPort } = await startApp((req, res) => res.end(req.headers.host));
    const relay = await startRelay();
    const key = newKey();
    const a = await startTunnel(relay.url, appPort, { keyPair: key, session: 'api' });
    const b = await startTunnel(relay.url, appPort, { keyPair: key, session: 'web' });
    expect(a.label).toBe(labelFor(key.publicKey, 'api'));
    expect(b.label).toBe(labelFor(key.publicKey, 'web'));
    expect(a.label).not.toBe(b.label);
    expect((await request(relay.port, hostOf(a.url))).text).toBe(hostOf(a.url));
    expect((await request(relay.port, hostOf(b.url))).text).toBe(hostOf(b.url));
  });

  test('a new session of the same key replaces the old one at once', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('ok'));
    const relay = await startRelay();
    const key = newKey();
    const old = await startTunnel(relay.url, appPort, { keyPair: key });
    const replaced = new Promise<{ code: string }>((resolve) => old.agent.once('fatal', (e) => resolve(e)));
    const fresh = await startTunnel(relay.url, appPort, { keyPair: key });
    expect(fresh.url).toBe(old.url);
    expect((await replaced).code).toBe('BURROW_ERR_SESSION_REPLACED');
    await waitFor(() => relay.relay.stats().sessions === 1, 3000, 'one session');
    expect((await request(relay.port, hostOf(fresh.url))).status).toBe(200);
  });
});

describe('hostile agents', () => {
  async function registered(relayUrl: string): Promise<RawAgent> {
    const agent = await RawAgent.open(relayUrl);
    await agent.register(newKey(), relayUrl);
    await agent.next(FrameType.REGISTERED);
    return agent;
  }

  test('malformed frames close that session only, with a coded error', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('still here'));
    const relay = await startRelay();
    const good = await startTunnel(relay.url, appPort);
    const cases: Buffer[] = [
      Buffer.from([0x12, 0, 0, 0]), // truncated header
      Buffer.from([0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0]), // unknown type
      Buffer.from([0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0]), // HELLO from an agent
      Buffer.from([0x12, 0, 0, 0, 0, 1, 0, 0, 0, 9, 1]), // length runs past the message
      encodeFrame(FrameType.DATA, 0x80, 1, Buffer.from('x')), // unknown flag
      encodeFrame(FrameType.DATA, 0, 0, Buffer.from('x')), // stream frame on stream 0
      encodeFrame(FrameType.DATA, 0, 99, Buffer.from('x')), // stream never opened
    ];
    for (const bytes of cases) {
      const bad = await registered(relay.url);
      bad.send(bytes);
      await expectRefused(bad, 'BURROW_ERR_PROTOCOL', 1002);
    }
    const text = await registered(relay.url);
    text.ws.send('not binary');
    await expectRefused(text, 'BURROW_ERR_PROTOCOL', 1002);
    expect((await request(relay.port, hostOf(good.url))).text).toBe('still here');
  });

  test('an oversized frame and an oversized message are refused', async () => {
    const relay = await startRelay();
    const big = await registered(relay.url);
    const header = Buffer.alloc(10);
    header[0] = FrameType.DATA;
    header.writeUInt32BE(1, 2);
    header.writeUInt32BE(70_000, 6);
    big.send(header, Buffer.alloc(70_000));
    await expectRefused(big, 'BURROW_ERR_FRAME_TOO_LARGE', 1009);
    const huge = await registered(relay.url);
    huge.ws.send(Buffer.alloc(2 * 1024 * 1024));
    expect(await huge.closed()).toBe(1009);
    await waitFor(() => relay.relay.stats().sessions === 0, 3000, 'sessions closed');
  });

  test('traffic before registration is a protocol error', async () => {
    const relay = await startRelay();
    const agent = await RawAgent.open(relay.url);
    await agent.next(FrameType.HELLO);
    agent.send(encodeFrame(FrameType.PING, 0, 0, Buffer.alloc(8)));
    await expectRefused(agent, 'BURROW_ERR_PROTOCOL', 1002);
  });

  test('an agent that sends a response for a stream it was not given is cut off; requests in flight get 502 at once', async () => {
    const relay = await startRelay({ requestTimeoutMs: 15_000 });
    const key = newKey();
    const agent = await RawAgent.open(relay.url);
    await agent.register(key, relay.url);
    const reg = decodeRegistered((await agent.next(FrameType.REGISTERED)).payload);
    const pending = request(relay.port, `${reg.label}.localhost:${relay.port}`);
    const open = await agent.next(FrameType.OPEN);
    agent.send(encodeFrame(FrameType.RESPONSE, 0, open.streamId + 2, Buffer.alloc(3)));
    await expectRefused(agent, 'BURROW_ERR_PROTOCOL', 1002);
    const r = await pending;
    expect(r.status).toBe(502);
    expect(r.headers['x-burrow-error']).toBe('BURROW_ERR_AGENT_DISCONNECTED');
  });

  test('the relay pings an idle agent and drops one that stays silent', async () => {
    const lines: { code?: string; msg?: string }[] = [];
    const logger = Fastify({ logger: { level: 'info', stream: { write: (l: string) => lines.push(JSON.parse(l)) } } }).log;
    const relay = await startRelay({ pingIntervalMs: 100 }, undefined, { logger });
    const agent = await registered(relay.url);
    const ping = await agent.next(FrameType.PING, 2000);
    expect(ping.payload.length).toBe(8);
    // Say nothing more: after twice the interval the relay gives up on us.
    await expectRefused(agent, 'BURROW_ERR_HEARTBEAT_TIMEOUT', 4011);
    expect(relay.relay.stats().sessions).toBe(0);
    expect(lines.some((l) => l.code === 'BURROW_ERR_HEARTBEAT_TIMEOUT' && /no frame from the agent/.test(l.msg ?? ''))).toBe(true);
  });
});
