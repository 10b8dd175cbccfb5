/** Throw-away TLS material for tests. */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/** A throw-away self-signed certificate for `cn` (openssl req -x509), written into `dir`: the two file paths. */
export function selfSignedCert(dir: string, cn: string, openssl = 'openssl'): { cert: string; key: string } {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync(openssl, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${cn}`, '-keyout', key, '-out', cert], {
    stdio: 'pipe',
  });
  return { cert, key };
}
