/**
 * The TenantStore contract: what FileTenantStore (memory and on disk) and RedisTenantStore
 * (standalone and cluster) must all do. Not a test file itself: a *.test.ts file calls
 * tenantStoreContract(name, open) to run it.
 *
 * open() returns a fresh, empty store (its own data dir or key prefix) and, when the store
 * persists, reopen(): closes it and opens another over the same data.
 */
import { AdminError } from '../src/tenancy/adminError';
import { HISTORY_DEFAULT_LIMIT } from '../src/tenancy/tenantRules';
import { parseToken, TOKEN_CHARS } from '../src/tenancy/tokens';
import type { HistoryEvent, TenantStore } from '../src/tenancy/types';

export interface OpenedStore {
  readonly store: TenantStore;
  /** Closes `store` and opens a new one over the same data (persistent stores only). */
  reopen?(): Promise<TenantStore>;
  /** Releases everything (the store may already be closed). */
  close(): Promise<void>;
}

export interface ContractOptions {
  /** Run only the core tests (the cluster run stays small). */
  readonly small?: boolean;
}

const event = (at: number, kind: HistoryEvent['kind'] = 'connect', label = 'app'): HistoryEvent => ({
  at,
  kind,
  label,
  node: 'n1',
  sessionId: `s-${at}`,
  peer: '127.0.0.1',
  ...(kind === 'disconnect' ? { reason: 'BURROW_ERR_AGENT_SHUTDOWN' } : {}),
});

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof AdminError) return err.code;
    throw err;
  }
  throw new Error('expected an AdminError');
}

export function tenantStoreContract(name: string, open: () => Promise<OpenedStore>, options: ContractOptions = {}): void {
  describe(`TenantStore contract: ${name}`, () => {
    let opened: OpenedStore;
    let store: TenantStore;
    beforeEach(async () => {
      opened = await open();
      store = opened.store;
    });
    afterEach(async () => {
      await opened.close();
    });

    test('creates, gets, lists, updates and deletes tenants', async () => {
      const a = await store.createTenant({ id: 'acme', name: 'Acme Inc', quotas: { maxTunnels: 3 }, reservedNames: ['acme', 'www-acme'] });
      expect(a).toMatchObject({ id: 'acme', name: 'Acme Inc', quotas: { maxTunnels: 3 }, reservedNames: ['acme', 'www-acme'] });
      expect(typeof a.createdAt).toBe('number');
      const b = await store.createTenant({ name: 'Generated' });
      expect(b.id).toMatch(/^[a-z0-9][a-z0-9-]{0,39}$/);
      expect(b).toMatchObject({ quotas: {}, reservedNames: [] });
      expect(await store.getTenant('acme')).toEqual(a);
      expect(await store.getTenant('nobody')).toBeUndefined();
      expect((await store.listTenants()).map((t) => t.id).sort()).toEqual(['acme', b.id].sort());

      const u = await store.updateTenant('acme', { name: 'Acme', quotas: { maxStreams: 10 } });
      expect(u).toEqual({ ...a, name: 'Acme', quotas: { maxStreams: 10 } });
      expect(await store.getTenant('acme')).toEqual(u);
      expect(await store.updateTenant('nobody', { name: 'x' })).toBeUndefined();

      expect(await store.deleteTenant('acme')).toBe(true);
      expect(await store.deleteTenant('acme')).toBe(false);
      expect(await store.getTenant('acme')).toBeUndefined();
      expect((await store.listTenants()).map((t) => t.id)).toEqual([b.id]);
    });

    test('rejects a duplicate id and invalid input with coded errors', async () => {
      await store.createTenant({ id: 'dup', name: 'one' });
      expect(await code(store.createTenant({ id: 'dup', name: 'two' }))).toBe('conflict');
      expect(await code(store.createTenant({ id: 'Bad_Id', name: 'x' }))).toBe('invalid');
      expect(await code(store.createTenant({ id: '-x', name: 'x' }))).toBe('invalid');
      expect(await code(store.createTenant({ id: 'a'.repeat(41), name: 'x' }))).toBe('invalid');
      expect(await code(store.createTenant({ name: '' }))).toBe('invalid');
      expect(await code(store.createTenant({ name: 'x'.repeat(101) }))).toBe('invalid');
      expect(await code(store.createTenant({ name: 'x', quotas: { maxTunnels: 0 } }))).toBe('invalid');
      expect(await code(store.createTenant({ name: 'x', quotas: { maxTunnels: 1.5 } }))).toBe('invalid');
      expect(await code(store.createTenant({ name: 'x', quotas: { nope: 1 } as never }))).toBe('invalid');
      expect(await code(store.createTenant({ name: 'x', reservedNames: ['-bad'] }))).toBe('invalid');
      expect(await code(store.createTenant({ name: 'x', reservedNames: ['Upper'] }))).toBe('invalid');
      expect(await code(store.updateTenant('dup', { name: '' }))).toBe('invalid');
      expect((await store.listTenants()).map((t) => t.id)).toEqual(['dup']);
    });

    test('reserved names belong to one tenant; updates move them; deletes free them', async () => {
      await store.createTenant({ id: 'one', name: 'One', reservedNames: ['shop', 'blog'] });
      expect(await store.nameReservedBy('shop')).toBe('one');
      expect(await store.nameReservedBy('free')).toBeUndefined();
      expect(await code(store.createTenant({ id: 'two', name: 'Two', reservedNames: ['mine', 'shop'] }))).toBe('conflict');
      // The failed create reserved nothing and created nothing.
      expect(await store.nameReservedBy('mine')).toBeUndefined();
      expect(await store.getTenant('two')).toBeUndefined();

      await store.createTenant({ id: 'two', name: 'Two' });
      expect(await code(store.updateTenant('two', { reservedNames: ['blog'] }))).toBe('conflict');
      expect(await store.updateTenant('one', { reservedNames: ['shop', 'news'] })).toMatchObject({ reservedNames: ['shop', 'news'] });
      expect(await store.nameReservedBy('blog')).toBeUndefined();
      expect(await store.nameReservedBy('news')).toBe('one');
      expect(await store.updateTenant('two', { reservedNames: ['blog'] })).toMatchObject({ reservedNames: ['blog'] });
      expect(await store.nameReservedBy('blog')).toBe('two');

      await store.deleteTenant('one');
      expect(await store.nameReservedBy('shop')).toBeUndefined();
      expect(await store.nameReservedBy('news')).toBeUndefined();
      expect(await store.nameReservedBy('blog')).toBe('two');
    });

    test('tokens: shown once, authenticate to their tenant, listed without secrets, revoked', async () => {
      await store.createTenant({ id: 'acme', name: 'Acme' });
      const { token, info } = await store.createToken('acme', 'laptop');
      expect(token).toHaveLength(TOKEN_CHARS);
      expect(parseToken(token)?.id).toBe(info.id);
      expect(info).toMatchObject({ tenantId: 'acme', description: 'laptop' });

      const auth = await store.authenticate(token);
      expect(auth?.tenant.id).toBe('acme');
      expect(auth?.tokenId).toBe(info.id);

      const second = await store.createToken('acme');
      expect(second.info.description).toBeUndefined();
      const listed = await store.listTokens('acme');
      expect(listed.map((t) => t.id).sort()).toEqual([info.id, second.info.id].sort());
      expect(JSON.stringify(listed)).not.toContain(parseToken(token)?.secret);
      expect(await store.listTokens('nobody')).toEqual([]);

      expect(await store.revokeToken(info.id)).toBe(true);
      expect(await store.revokeToken(info.id)).toBe(false);
      expect(await store.authenticate(token)).toBeUndefined();
      expect((await store.listTokens('acme')).map((t) => t.id)).toEqual([second.info.id]);
      expect(await store.authenticate(second.token)).toMatchObject({ tokenId: second.info.id });
    });

    test('authenticate rejects malformed, unknown and tampered tokens', async () => {
      await store.createTenant({ id: 'acme', name: 'Acme' });
      const { token } = await store.createToken('acme');
      const last = token.at(-1) === 'A' ? 'B' : 'A';
      expect(await store.authenticate(`${token.slice(0, -1)}${last}`)).toBeUndefined();
      expect(await store.authenticate(token.slice(0, -1))).toBeUndefined();
      expect(await store.authenticate('')).toBeUndefined();
      expect(await store.authenticate('burrow_aaaaaaaaaaaa_' + 'A'.repeat(43))).toBeUndefined();
      expect(await store.authenticate('x'.repeat(10_000))).toBeUndefined();
    });

    test('createToken needs a tenant; deleting the tenant revokes its tokens', async () => {
      expect(await code(store.createToken('nobody'))).toBe('not_found');
      await store.createTenant({ id: 'gone', name: 'Gone' });
      await store.createTenant({ id: 'stays', name: 'Stays' });
      const a = await store.createToken('gone');
      const b = await store.createToken('gone');
      const c = await store.createToken('stays');
      expect(await store.validTokenIds([a.info.id, b.info.id, c.info.id])).toEqual(new Set([a.info.id, b.info.id, c.info.id]));
      await store.deleteTenant('gone');
      expect(await store.authenticate(a.token)).toBeUndefined();
      expect(await store.validTokenIds([a.info.id, b.info.id, c.info.id, 'notatokenid!', 'aaaaaaaaaaaa'])).toEqual(new Set([c.info.id]));
      // A new tenant of the same id does not revive the old tokens.
      await store.createTenant({ id: 'gone', name: 'Again' });
      expect(await store.authenticate(b.token)).toBeUndefined();
      expect(await store.validTokenIds([b.info.id])).toEqual(new Set());
      expect(await store.listTokens('gone')).toEqual([]);
      expect(await store.validTokenIds([])).toEqual(new Set());
    });

    test('history: newest first, limited, only for existing tenants, dropped with the tenant', async () => {
      await store.createTenant({ id: 'acme', name: 'Acme' });
      const now = Date.now();
      await store.recordHistory('acme', event(now - 3000));
      await store.recordHistory('acme', event(now - 2000, 'disconnect'));
      await store.recordHistory('acme', event(now - 1000));
      await store.recordHistory('nobody', event(now));
      const all = await store.history('acme');
      expect(all.map((e) => e.at)).toEqual([now - 1000, now - 2000, now - 3000]);
      expect(all[1]).toEqual(event(now - 2000, 'disconnect'));
      expect((await store.history('acme', 2)).map((e) => e.at)).toEqual([now - 1000, now - 2000]);
      expect(await store.history('nobody')).toEqual([]);
      expect(await code(store.history('acme', 0))).toBe('invalid');
      await store.deleteTenant('acme');
      await store.createTenant({ id: 'acme', name: 'Acme again' });
      expect(await store.history('acme')).toEqual([]);
    });

    if (options.small) return;

    test('history keeps at most HISTORY_DEFAULT_LIMIT by default and the newest events', async () => {
      await store.createTenant({ id: 'busy', name: 'Busy' });
      const now = Date.now();
      for (let i = 0; i < HISTORY_DEFAULT_LIMIT + 5; i++) await store.recordHistory('busy', event(now - 100_000 + i));
      const h = await store.history('busy');
      expect(h).toHaveLength(HISTORY_DEFAULT_LIMIT);
      expect(h[0]?.at).toBe(now - 100_000 + HISTORY_DEFAULT_LIMIT + 4);
    });

    test('close is idempotent', async () => {
      await store.close();
      await store.close();
    });

    test('survives a reopen: tenants, names, tokens and revocations persist', async () => {
      if (opened.reopen === undefined) return;
      await store.createTenant({ id: 'acme', name: 'Acme', quotas: { requestsPerMinute: 600 }, reservedNames: ['acme'] });
      const kept = await store.createToken('acme', 'kept');
      const revoked = await store.createToken('acme');
      await store.revokeToken(revoked.info.id);
      await store.recordHistory('acme', event(Date.now()));
      const again = await opened.reopen();
      expect(await again.getTenant('acme')).toMatchObject({ name: 'Acme', quotas: { requestsPerMinute: 600 }, reservedNames: ['acme'] });
      expect(await again.nameReservedBy('acme')).toBe('acme');
      expect(await again.authenticate(kept.token)).toMatchObject({ tokenId: kept.info.id });
      expect(await again.authenticate(revoked.token)).toBeUndefined();
      expect((await again.listTokens('acme')).map((t) => t.description)).toEqual(['kept']);
      expect(await again.history('acme')).toHaveLength(1);
    });
  });
}
