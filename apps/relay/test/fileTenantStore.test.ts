/**
 * FileTenantStore: the TenantStore contract in memory and on disk (with reload), then what only
 * the file store does: atomic 0600 files, no secret on disk, bounded history with a clock, and a
 * clear DataDirError for a damaged tenants.json.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataDirError } from '../src/nameStore';
import { FileTenantStore } from '../src/tenancy/fileStore';
import { parseToken } from '../src/tenancy/tokens';
import type { HistoryEvent, TenantStore } from '../src/tenancy/types';
import { tenantStoreContract } from './tenantStore.contract';

const dirs: string[] = [];
const tempDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'burrow-tenants-'));
  dirs.push(dir);
  return dir;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

tenantStoreContract('FileTenantStore in memory', async () => {
  const store = new FileTenantStore();
  return { store, close: () => store.close() };
});

tenantStoreContract('FileTenantStore with a data dir', async () => {
  const dataDir = tempDir();
  let current: TenantStore = new FileTenantStore({ dataDir });
  return {
    store: current,
    async reopen() {
      await current.close();
      current = new FileTenantStore({ dataDir });
      return current;
    },
    close: () => current.close(),
  };
});

const ev = (at: number): HistoryEvent => ({ at, kind: 'connect', label: 'l', node: 'n', sessionId: 's', peer: 'p' });

describe('FileTenantStore on disk', () => {
  test('tenants.json is mode 0600, replaced atomically, and holds digests, never tokens', async () => {
    const dataDir = tempDir();
    const store = new FileTenantStore({ dataDir });
    await store.createTenant({ id: 'acme', name: 'Acme' });
    const { token } = await store.createToken('acme');
    const file = join(dataDir, 'tenants.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain(token);
    expect(text).not.toContain(parseToken(token)?.secret);
    expect(JSON.parse(text)).toMatchObject({ version: 1, tenants: [{ id: 'acme' }], tokens: [{ tenantId: 'acme' }] });
    // No temp files are left behind.
    expect(readdirSync(dataDir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    await store.close();
  });

  test('a damaged tenants.json fails with DataDirError naming the file', () => {
    const dataDir = tempDir();
    writeFileSync(join(dataDir, 'tenants.json'), '{"version":1,"tenants":[');
    expect(() => new FileTenantStore({ dataDir })).toThrow(DataDirError);
    expect(() => new FileTenantStore({ dataDir })).toThrow(/tenants\.json/);
    writeFileSync(join(dataDir, 'tenants.json'), JSON.stringify({ version: 1, tenants: [{ id: 'BAD', name: 'x', createdAt: 1 }], tokens: [] }));
    expect(() => new FileTenantStore({ dataDir })).toThrow(/tenant "BAD" is not valid/);
  });

  test('a damaged history file is dropped, not fatal', async () => {
    const dataDir = tempDir();
    const first = new FileTenantStore({ dataDir });
    await first.createTenant({ id: 'acme', name: 'Acme' });
    await first.close();
    writeFileSync(join(dataDir, 'tenant-history.json'), 'not json');
    const again = new FileTenantStore({ dataDir });
    expect(await again.history('acme')).toEqual([]);
    await again.close();
  });

  test('history is bounded in count and age', async () => {
    let now = 1_000_000;
    const store = new FileTenantStore({ now: () => now, historyMaxEvents: 5, historyMaxAgeMs: 10_000 });
    await store.createTenant({ id: 'acme', name: 'Acme' });
    for (let i = 0; i < 8; i++) await store.recordHistory('acme', ev(now + i));
    expect((await store.history('acme', 100)).map((e) => e.at)).toEqual([7, 6, 5, 4, 3].map((i) => now + i));
    const start = now;
    now += 10_006;
    // Events older than 10 s are gone: only the last two (at +6, +7) are within the window.
    expect((await store.history('acme', 100)).map((e) => e.at)).toEqual([start + 7, start + 6]);
    await store.close();
  });

  test('history is saved on close and reloaded; without a data dir nothing is written', async () => {
    const dataDir = tempDir();
    const store = new FileTenantStore({ dataDir });
    await store.createTenant({ id: 'acme', name: 'Acme' });
    await store.recordHistory('acme', ev(Date.now()));
    await store.close();
    expect(existsSync(join(dataDir, 'tenant-history.json'))).toBe(true);
    expect(statSync(join(dataDir, 'tenant-history.json')).mode & 0o777).toBe(0o600);
    const again = new FileTenantStore({ dataDir });
    expect(await again.history('acme')).toHaveLength(1);
    await again.close();
    await expect(again.getTenant('acme')).rejects.toMatchObject({ code: 'unavailable' });
  });
});
