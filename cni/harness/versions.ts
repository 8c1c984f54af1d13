// Versions the harness (like libcni) knows, and negotiation of a conflist's `cniVersions`.
export const HARNESS_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];

export function cmpVersion(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export const atLeast = (v: string, min: string): boolean => cmpVersion(v, min) >= 0;

/** libcni (>=1.2): with `cniVersions`, use the highest entry the runtime supports; else `cniVersion`. */
export function negotiate(cniVersion: unknown, cniVersions: unknown): string | undefined {
  if (Array.isArray(cniVersions)) {
    const known = cniVersions.filter((v): v is string => typeof v === 'string' && HARNESS_VERSIONS.includes(v));
    known.sort(cmpVersion);
    if (known.length) return known[known.length - 1];
  }
  return typeof cniVersion === 'string' && cniVersion !== '' ? cniVersion : undefined;
}
