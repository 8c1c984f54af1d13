// The plain manifest (charts/manifests/midonet-bees.yaml) is the chart rendered with its defaults into kube-system:
// the chart is the only source. `npm run manifests` rewrites it; kubernetes/test/chart.test.ts fails when the
// committed file differs from a fresh render.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chartRoot, helm } from './helm.js';

export const CHART_DIR = join(chartRoot(), 'charts', 'midonet-bees');
export const MANIFEST_PATH = join(chartRoot(), 'charts', 'manifests', 'midonet-bees.yaml');
export const MANIFEST_NAMESPACE = 'kube-system';
/** The oldest Kubernetes the chart supports (Chart.yaml kubeVersion), so the render does not depend on Helm's default. */
export const KUBE_VERSION = '1.29.0';

export async function renderChart(opts: { namespace?: string; set?: string[]; values?: string[] } = {}): Promise<string> {
  return helm([
    'template',
    'midonet-bees',
    CHART_DIR,
    '--namespace',
    opts.namespace ?? MANIFEST_NAMESPACE,
    '--kube-version',
    KUBE_VERSION,
    ...(opts.values ?? []).flatMap((v) => ['--values', v]),
    ...(opts.set ?? []).flatMap((s) => ['--set', s]),
  ]);
}

export async function renderManifest(): Promise<string> {
  const header =
    '# Generated from charts/midonet-bees by `npm run manifests` (helm template, default values, namespace kube-system).\n' +
    '# Do not edit: change the chart and regenerate. Install: kubectl apply -f charts/manifests/midonet-bees.yaml\n';
  return header + (await renderChart());
}

// `npm run manifests`
if (process.argv[1] && new URL(import.meta.url).pathname === process.argv[1]) {
  await writeFile(MANIFEST_PATH, await renderManifest());
  process.stdout.write(`wrote ${MANIFEST_PATH}\n`);
}
