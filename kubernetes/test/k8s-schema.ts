// Validates Kubernetes objects against the Kubernetes schemas, strictly, with the kubernetes-models package (a
// devDependency; $BEES_EXTRA_NODE_MODULES adds directories to look for it in):
// - its ajv validators (required fields, types, enums, formats), per kind: `new DaemonSet(obj).validate()`;
// - unknown fields, which those validators let through (the API server refuses them with fieldValidation=Strict):
//   each object becomes a TypeScript object literal typed with the package's interface for its kind, and the
//   compiler's excess-property check refuses any field the schema does not declare, at any depth.
import { existsSync } from 'node:fs';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';
import { chartRoot } from '../chart/helm.js';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata?: { name?: string };
  [k: string]: unknown;
}

/** The node_modules directory holding kubernetes-models. */
export function modelsDir(env: NodeJS.ProcessEnv = process.env): string {
  const dirs = [join(chartRoot(), 'node_modules'), ...(env.BEES_EXTRA_NODE_MODULES ?? '').split(':').filter(Boolean)];
  const found = dirs.find((d) => existsSync(join(d, 'kubernetes-models', 'package.json')));
  if (!found) throw new Error('no kubernetes-models: add the devDependency (npm i -D kubernetes-models@5.1.0)');
  return found;
}

/** kubernetes-models' module for a kind: apps/v1 → apps/v1/DaemonSet, v1 → v1/Service. */
function modulePath(o: K8sObject): string {
  return `kubernetes-models/${o.apiVersion}/${o.kind}`;
}

const label = (o: K8sObject): string => `${o.kind}/${o.metadata?.name ?? '?'}`;

/** Schema errors, one line each, empty when every object is valid. */
export async function schemaErrors(objects: K8sObject[]): Promise<string[]> {
  const dir = modelsDir();
  const errors: string[] = [];
  for (const o of objects) {
    const file = join(dir, `${modulePath(o)}.js`);
    if (!existsSync(file)) {
      errors.push(`${label(o)}: no schema for ${o.apiVersion} ${o.kind}`);
      continue;
    }
    const mod = (await import(file)) as Record<string, new (data: unknown) => { validate(): void }>;
    try {
      new mod[o.kind]!(o).validate();
    } catch (err) {
      errors.push(`${label(o)}: ${(err as Error).message}`);
    }
  }
  return errors;
}

/** Fields the schemas do not declare, as the TypeScript compiler reports them. */
export async function unknownFieldErrors(objects: K8sObject[]): Promise<string[]> {
  const work = await mkdtemp(join(tmpdir(), 'bees-k8s-schema-'));
  try {
    await symlink(modelsDir(), join(work, 'node_modules'));
    const lines = objects.map(
      (o, i) =>
        `import type { I${o.kind} as T${i} } from ${JSON.stringify(modulePath(o))};\n` +
        `export const o${i}: T${i} = ${JSON.stringify(o, null, 1)};`,
    );
    const file = join(work, 'objects.ts');
    await writeFile(join(work, 'package.json'), '{"type":"module"}');
    await writeFile(file, lines.join('\n') + '\n');
    const program = ts.createProgram([file], {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      types: [],
    });
    return ts
      .getPreEmitDiagnostics(program)
      .filter((d) => d.file?.fileName === file)
      .map((d) => {
        const text =
          ts
            .flattenDiagnosticMessageText(d.messageText, '\n')
            .split('\n')
            .find((l) => /does not exist|not assignable|Cannot find/.test(l)) ?? ts.flattenDiagnosticMessageText(d.messageText, ' ');
        const line = d.start === undefined ? 0 : d.file!.getLineAndCharacterOfPosition(d.start).line;
        const idx = Number(
          /^export const o(\d+)/m.exec(
            d
              .file!.text.split('\n')
              .slice(0, line + 1)
              .reverse()
              .find((l) => l.startsWith('export const o')) ?? '',
          )?.[1] ?? -1,
        );
        return `${idx >= 0 ? label(objects[idx]!) : '?'}: ${text.trim()}`;
      });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
