// CNI spec versions the plugin speaks, and the rules that depend on them.
import { CniError, Code } from './errors.js';

export const SUPPORTED_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST: CniVersion = '1.1.0';

/** Numeric comparison of dotted versions ("0.10.0" > "0.9.0"); non-numeric parts count as 0. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map((p) => Number.parseInt(p, 10) || 0);
  const pb = b.split('.').map((p) => Number.parseInt(p, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export function isSupported(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** The config's cniVersion, or a code-1 error naming what we do support. A missing version means 0.1.0 (SPEC 0.x). */
export function requireVersion(v: unknown): CniVersion {
  if (v === undefined || v === '') return '0.1.0';
  if (isSupported(v)) return v;
  throw new CniError(
    Code.incompatibleVersion,
    `incompatible CNI version: this plugin speaks ${SUPPORTED_VERSIONS.join(', ')}, the config asks for ${JSON.stringify(v)}`,
  );
}

/** The result shape a version uses: 0.1/0.2 `ip4`/`ip6`, 0.3.x/0.4.0 `ips[].version`, 1.x plain `ips`. */
export function resultShape(v: string): 'legacy' | 'versioned' | 'current' {
  if (compareVersions(v, '0.3.0') < 0) return 'legacy';
  if (compareVersions(v, '1.0.0') < 0) return 'versioned';
  return 'current';
}
