/**
 * Ed25519 keys as JWK (RFC 8037 OKP). The caller supplies random seeds; nothing here reads
 * a clock, a file or the system RNG.
 */
import { ED25519_SEED_BYTES, publicKeyFromSeed } from './ed25519';
import { BurrowError } from './errors';
import { base64url, fromBase64url } from './naming';

export interface Ed25519Jwk {
  readonly kty: 'OKP';
  readonly crv: 'Ed25519';
  /** base64url public key. */
  readonly x: string;
  /** base64url 32-byte seed (the private key). */
  readonly d: string;
}

export interface KeyPair {
  readonly publicKey: Uint8Array;
  /** Seed followed by public key, 64 bytes (the tweetnacl layout). */
  readonly secretKey: Uint8Array;
}

export function keyPairFromSeed(seed: Uint8Array): KeyPair {
  if (seed.length !== ED25519_SEED_BYTES) throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', 'ed25519 seed must be 32 bytes');
  const publicKey = publicKeyFromSeed(seed);
  const secretKey = new Uint8Array(64);
  secretKey.set(seed, 0);
  secretKey.set(publicKey, 32);
  return { publicKey, secretKey };
}

export function keyPairToJwk(kp: KeyPair): Ed25519Jwk {
  return { kty: 'OKP', crv: 'Ed25519', x: base64url(kp.publicKey), d: base64url(kp.secretKey.subarray(0, 32)) };
}

/** Parses and checks a stored key: the public part must match the private part. */
export function keyPairFromJwk(value: unknown): KeyPair {
  if (typeof value !== 'object' || value === null) throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', 'key file is not a JSON object');
  const jwk = value as Record<string, unknown>;
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.d !== 'string' || typeof jwk.x !== 'string') {
    throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', 'key file must be an Ed25519 JWK with kty "OKP", crv "Ed25519", x and d');
  }
  const kp = keyPairFromSeed(fromBase64url(jwk.d));
  if (base64url(kp.publicKey) !== jwk.x) throw new BurrowError('BURROW_ERR_BAD_REGISTRATION', 'key file: public key "x" does not match private key "d"');
  return kp;
}
