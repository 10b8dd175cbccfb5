/**
 * Friendly-name bindings on disk (`<data-dir>/names.jsonl`, one {"name","key"} object per line,
 * append-only), so that a single relay keeps "first key wins" across restarts. Only used with
 * the in-memory bus; a shared registry (Redis) keeps its own.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NameBindings } from '@burrow/bus';

export class DataDirError extends Error {
  readonly code = 'BURROW_ERR_DATA_DIR';
}

export function fileNameBindings(dataDir: string): NameBindings {
  const file = join(dataDir, 'names.jsonl');
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new DataDirError(`cannot create --data-dir ${dataDir}: ${(err as Error).message}`);
  }
  const initial: [string, string][] = [];
  if (existsSync(file)) {
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => {
      if (line.trim() === '') return;
      let entry: unknown;
      try {
        entry = JSON.parse(line);
      } catch {
        throw new DataDirError(`${file} line ${i + 1} is not JSON; fix or remove that line`);
      }
      const { name, key } = (entry ?? {}) as { name?: unknown; key?: unknown };
      if (typeof name !== 'string' || typeof key !== 'string') throw new DataDirError(`${file} line ${i + 1} needs string "name" and "key"`);
      // The first binding of a name wins, as it did when it was made.
      if (!initial.some(([n]) => n === name)) initial.push([name, key]);
    });
  }
  return {
    initial,
    onBind(name, keyId) {
      appendFileSync(file, `${JSON.stringify({ name, key: keyId, at: new Date().toISOString() })}\n`, { mode: 0o600 });
    },
  };
}
