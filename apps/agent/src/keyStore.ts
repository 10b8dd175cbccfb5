/**
 * The agent's ed25519 key on disk: a JWK created on first run with mode 0600 (folder 0700),
 * at --key FILE, else $BURROW_HOME/key.json, else ~/.config/burrow/key.json.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { type KeyPair, keyPairFromJwk, keyPairFromSeed, keyPairToJwk } from '@burrow/protocol';

export function defaultKeyPath(env: Readonly<Record<string, string | undefined>> = process.env): string {
  const home = env.BURROW_HOME;
  return home !== undefined && home !== '' ? join(home, 'key.json') : join(homedir(), '.config', 'burrow', 'key.json');
}

export interface LoadedKey {
  readonly keyPair: KeyPair;
  readonly path: string;
  readonly created: boolean;
  /** Set when the file is readable by others: a reason to warn. */
  readonly looseMode?: number;
}

export class KeyFileError extends Error {
  readonly code = 'BURROW_ERR_KEY_FILE';
}

function read(path: string): LoadedKey {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw Object.assign(new KeyFileError(`cannot read key file ${path}: ${(err as Error).message}`), { cause: err });
  }
  let keyPair: KeyPair;
  try {
    keyPair = keyPairFromJwk(JSON.parse(text));
  } catch (err) {
    throw new KeyFileError(`key file ${path} is not a valid Ed25519 JWK: ${(err as Error).message}`);
  }
  const mode = statSync(path).mode & 0o777;
  return (mode & 0o077) !== 0 ? { keyPair, path, created: false, looseMode: mode } : { keyPair, path, created: false };
}

/** Reads the key, or creates it (exclusively, 0600) when the file does not exist. */
export function loadOrCreateKey(path: string): LoadedKey {
  try {
    statSync(path);
    return read(path);
  } catch (err) {
    if (err instanceof KeyFileError || (err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const keyPair = keyPairFromSeed(randomBytes(32));
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  try {
    writeFileSync(path, `${JSON.stringify(keyPairToJwk(keyPair), null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    chmodSync(path, 0o600);
  } catch (err) {
    // Another process created it first: use theirs, so both agree on one identity.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return read(path);
    throw new KeyFileError(`cannot create key file ${path}: ${(err as Error).message}`);
  }
  return { keyPair, path, created: true };
}
