// A throwaway CA and serving certificate for the test API server, made with the system openssl, so clients run
// their real TLS path (client-node's loadFromCluster insists on https unless the port is 80/8080/8001).
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestPki {
  /** PEM texts. */
  ca: string;
  cert: string;
  key: string;
}

/** Make a CA and a server certificate for 127.0.0.1 / localhost / kubernetes.default.svc (and `ips`) in `dir`. */
export async function makeTestPki(dir: string, ips: string[] = []): Promise<TestPki> {
  const f = (n: string): string => join(dir, n);
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.crt'),
    '-days',
    '2',
    '-subj',
    '/CN=bees-test-ca',
  ]);
  await writeFile(
    f('san.ext'),
    `subjectAltName=${['IP:127.0.0.1', ...ips.map((ip) => `IP:${ip}`), 'DNS:localhost', 'DNS:kubernetes.default.svc'].join(',')}\nextendedKeyUsage=serverAuth\n`,
  );
  await run('openssl', [
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    f('server.key'),
    '-out',
    f('server.csr'),
    '-subj',
    '/CN=kube-apiserver',
  ]);
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.crt'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-out',
    f('server.crt'),
    '-days',
    '2',
    '-extfile',
    f('san.ext'),
  ]);
  return {
    ca: await readFile(f('ca.crt'), 'utf8'),
    cert: await readFile(f('server.crt'), 'utf8'),
    key: await readFile(f('server.key'), 'utf8'),
  };
}
