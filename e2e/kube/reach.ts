// Reaching the API server double (apiserver.ts) from clients: a kubeconfig for a URL, and a TCP relay that lets
// harness hosts (network namespaces) reach a double listening on 127.0.0.1 of the root namespace.
import { createServer, connect, type Server } from 'node:net';
import * as k8s from '@kubernetes/client-node';

/** A kubeconfig for the double at `server` (any token; TLS not verified: the double serves plain HTTP). */
export function kubeConfigFor(server: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server, skipTLSVerify: true }],
    users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return kc;
}

/** Relay `listenIp`:<a free port> to `to`: harness hosts reach the root namespace at harness.rootIp. */
export async function forward(listenIp: string, to: URL): Promise<Server> {
  const srv = createServer((c) => {
    const up = connect(Number(to.port), to.hostname);
    c.pipe(up).pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  await new Promise<void>((r) => srv.listen(0, listenIp, r));
  return srv;
}
