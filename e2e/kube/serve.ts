// Run the test API server by hand: `node --import tsx e2e/kube/serve.ts [--port N] [--kubeconfig PATH]`,
// then `KUBECONFIG=PATH kubectl …`. Creates the `default` namespace, as a fresh cluster has it.
import { parseArgs } from 'node:util';
import { ApiServer } from './apiserver.js';
import { kinds } from './kinds.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    kubeconfig: { type: 'string', default: 'kubeconfig.bees-test' },
    'history-limit': { type: 'string', default: '1000' },
  },
});
const server = new ApiServer({ historyLimit: Number(values['history-limit']) });
const url = await server.start(Number(values.port));
server.create(
  kinds.find((k) => k.kind === 'Namespace')!,
  undefined,
  { metadata: { name: 'default' } },
);
await server.writeKubeconfig(values.kubeconfig);
console.log(`bees test API server (a double, not Kubernetes) at ${url}; KUBECONFIG=${values.kubeconfig}`);
const stop = (): void => void server.stop().then(() => process.exit(0));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
