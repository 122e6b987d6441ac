// Test certificates made with the openssl CLI in a temp dir: a CA, a server certificate for 127.0.0.1,
// client certificates with chosen OUs, and a self-signed certificate no one trusts.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CertFiles {
  cert: string;
  key: string;
}

export interface TestPki {
  dir: string;
  caCert: string;
  /** Server certificate for 127.0.0.1/localhost, signed by the CA, OU=agents. */
  server: CertFiles;
  /** Client certificates signed by the CA, by OU ("a+b": two OUs, "": none). */
  clients: Record<string, CertFiles>;
  /** Self-signed, for 127.0.0.1: a server nobody's CA vouches for. */
  untrusted: CertFiles;
  read(file: string): Buffer;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
}

const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function signed(dir: string, name: string, subject: string, ext: string): CertFiles {
  const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  const extFile = join(dir, `${name}.ext`);
  writeFileSync(extFile, ext);
  openssl(dir, ['req', '-new', ...ecKey, '-keyout', files.key, '-out', join(dir, `${name}.csr`), '-subj', subject]);
  openssl(dir, [
    'x509', '-req', '-in', join(dir, `${name}.csr`), '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '2', '-out', files.cert, '-extfile', extFile,
  ]);
  return files;
}

export function makeTestPki(dir: string, clientOUs: string[]): TestPki {
  openssl(dir, ['req', '-x509', ...ecKey, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/O=oa-test/CN=oa-test-ca']);
  const serverExt = 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n';
  const server = signed(dir, 'server', '/O=oa-test/OU=agents/CN=127.0.0.1', serverExt);
  const clients: Record<string, CertFiles> = {};
  for (const ous of clientOUs) {
    const name = ous === '' ? 'no-ou' : ous.replaceAll('+', '-');
    const subject = ous.split('+').filter((ou) => ou !== '').map((ou) => `/OU=${ou}`).join('');
    clients[ous] = signed(dir, `client-${name}`, `/O=oa-test${subject}/CN=client-${name}`, 'extendedKeyUsage=clientAuth\n');
  }
  const untrusted = { cert: join(dir, 'untrusted.crt'), key: join(dir, 'untrusted.key') };
  openssl(dir, [
    'req', '-x509', ...ecKey, '-keyout', untrusted.key, '-out', untrusted.cert, '-days', '2',
    '-subj', '/O=elsewhere/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
  ]);
  return { dir, caCert: join(dir, 'ca.crt'), server, clients, untrusted, read: (f) => readFileSync(f) };
}
