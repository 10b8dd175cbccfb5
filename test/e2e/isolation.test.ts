/**
 * Isolation between tunnels and tenants: a session touches only its own streams, labels and
 * names stay bound to their keys, and nothing a visitor or another tenant gets back reveals a
 * tunnel it does not own. Hand-made agents attempt each break-in against real relays.
 */
import { decodeReason, type ErrorCode, encodeFrame, encodeResponseHead, FLAG_FIN, FrameType } from '@burrow/protocol';
import { FileTenantStore } from '@burrow/relay';
import { cleanup, cleanups, hostOf, newKey, RawAgent, request, startApp, startRelay, startTunnel } from '../kit';

afterEach(cleanup);

async function registered(relayUrl: string): Promise<{ agent: RawAgent; label: string }> {
  const agent = await RawAgent.open(relayUrl);
  await agent.register(newKey(), relayUrl);
  const { label } = JSON.parse((await agent.next(FrameType.REGISTERED)).payload.toString()) as { label: string };
  return { agent, label };
}

async function expectRefused(agent: RawAgent, code: ErrorCode, close: number): Promise<void> {
  const err = decodeReason((await agent.next(FrameType.ERROR)).payload);
  expect(err.code).toBe(code);
  expect(await agent.closed()).toBe(close);
}

describe('a session touches only its own streams', () => {
  test.each([
    ['a RESPONSE', (id: number) => encodeFrame(FrameType.RESPONSE, FLAG_FIN, id, encodeResponseHead({ status: 200, reason: 'OK', headers: [] }))],
    ['a DATA frame', (id: number) => encodeFrame(FrameType.DATA, 0, id, Buffer.from('stolen'))],
    ['a CREDIT frame', (id: number) => encodeFrame(FrameType.CREDIT, 0, id, Buffer.from([0, 1, 0, 0]))],
  ])('%s for a stream of another session is refused: the intruder is closed, the owner answers normally', async (_what, frame) => {
    const relay = await startRelay();
    const owner = await registered(relay.url);
    const intruder = await registered(relay.url);
    const pending = request(relay.port, `${owner.label}.localhost:${relay.port}`);
    const open = await owner.agent.next(FrameType.OPEN);
    // The intruder names the owner's stream id on its own session.
    intruder.agent.send(frame(open.streamId));
    await expectRefused(intruder.agent, 'BURROW_ERR_PROTOCOL', 1002);
    owner.agent.send(
      encodeFrame(FrameType.RESPONSE, FLAG_FIN, open.streamId, encodeResponseHead({ status: 200, reason: 'OK', headers: ['content-length', '0'] })),
    );
    const r = await pending;
    expect(r.status).toBe(200);
    expect(relay.relay.stats().sessions).toBe(1);
  });
});

describe('labels and names are bound to keys and tenants', () => {
  test("another key cannot take a tunnel's name, even with a valid token of the same tenant", async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('owner'));
    const store = new FileTenantStore();
    const relay = await startRelay({ auth: 'token', adminToken: 'admin-token-for-tests-0123456789' }, undefined, { tenantStore: store });
    const tenant = await store.createTenant({ name: 'Acme' });
    const { token } = await store.createToken(tenant.id);
    const owner = await startTunnel(relay.url, appPort, { token, subdomain: 'orders' });
    const err = await import('@burrow/agent').then(({ connect }) =>
      connect({ relay: relay.url, to: appPort, keyPair: newKey(), token, subdomain: 'orders', timeoutMs: 5000 }).then(
        (t) => {
          cleanups.push(() => t.close());
          throw new Error('a second key took the name');
        },
        (e: Error) => e,
      ),
    );
    expect((err as { code?: string }).code).toBe('BURROW_ERR_NAME_TAKEN');
    expect((await request(relay.port, hostOf(owner.subdomainUrl ?? owner.url))).text).toBe('owner');
  });
});

describe('nothing reveals another tunnel', () => {
  test('error answers name only what was asked: no other labels, tenants or counts', async () => {
    const { port: appPort } = await startApp((_req, res) => res.end('x'));
    const store = new FileTenantStore();
    const relay = await startRelay({ auth: 'token', adminToken: 'admin-token-for-tests-0123456789' }, undefined, { tenantStore: store });
    const secretTenant = await store.createTenant({ id: 'secret-tenant', name: 'Secret Co', quotas: { requestsPerMinute: 1 } });
    const { token } = await store.createToken(secretTenant.id);
    const hidden = await startTunnel(relay.url, appPort, { token, access: { allowCidrs: ['10.0.0.0/8'] } });
    const answers = [
      await request(relay.port, `nosuchtunnel.localhost:${relay.port}`),
      await request(relay.port, `nosuchtunnel.localhost:${relay.port}`, { headers: { accept: 'application/json' } }),
      await request(relay.port, hostOf(hidden.url)),
      await request(relay.port, hostOf(hidden.url), { headers: { accept: 'application/json' } }),
      await request(relay.port, `localhost:${relay.port}`, { path: '/_burrow/tunnels' }),
    ];
    expect(answers.map((a) => a.status)).toEqual([404, 404, 403, 403, 404]);
    for (const a of answers) {
      expect(a.text).not.toContain('secret-tenant');
      expect(a.text).not.toContain('Secret Co');
    }
    // The unknown-tunnel page names the host asked for, never an existing tunnel.
    expect(answers[0]?.text).not.toContain(hidden.label);
  });
});
