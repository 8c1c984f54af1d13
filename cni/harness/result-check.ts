// What a runtime may rely on in an ADD result of a given version; a plugin that breaks it fails the harness.
import { cmpVersion } from './versions.js';

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const CIDR = /^[0-9a-fA-F.:]+\/\d{1,3}$/;

/** Every way `result` departs from the result format of `version`; empty when it conforms. */
export function resultProblems(result: unknown, version: string): string[] {
  const p: string[] = [];
  if (!isObject(result)) return [`result is not an object: ${JSON.stringify(result)}`];
  if (result.cniVersion !== version) p.push(`result cniVersion ${JSON.stringify(result.cniVersion)} is not the requested ${version}`);
  if (cmpVersion(version, '0.3.0') < 0) {
    if ('ips' in result || 'interfaces' in result) p.push(`a ${version} result uses ip4/ip6, not ips/interfaces`);
    for (const fam of ['ip4', 'ip6']) {
      const x = result[fam];
      if (x === undefined) continue;
      if (!isObject(x) || typeof x.ip !== 'string' || !CIDR.test(x.ip)) p.push(`${fam}.ip must be a CIDR`);
    }
    if (result.ip4 === undefined && result.ip6 === undefined) p.push('result has neither ip4 nor ip6');
    return p;
  }
  const interfaces = result.interfaces ?? [];
  if (!Array.isArray(interfaces)) p.push('interfaces must be a list');
  const ifs = Array.isArray(interfaces) ? interfaces : [];
  ifs.forEach((i: unknown, n) => {
    if (!isObject(i) || typeof i.name !== 'string' || i.name === '') p.push(`interfaces[${n}] has no name`);
  });
  if (!Array.isArray(result.ips)) p.push('ips must be a list');
  else {
    result.ips.forEach((ip: unknown, n) => {
      if (!isObject(ip) || typeof ip.address !== 'string' || !CIDR.test(ip.address)) {
        p.push(`ips[${n}].address must be a CIDR`);
        return;
      }
      const versioned = cmpVersion(version, '1.0.0') < 0;
      if (versioned && ip.version !== '4' && ip.version !== '6') p.push(`ips[${n}].version must be "4" or "6" in ${version}`);
      if (!versioned && 'version' in ip) p.push(`ips[${n}].version is not part of ${version} results`);
      if (ip.interface !== undefined && (typeof ip.interface !== 'number' || ip.interface < 0 || ip.interface >= ifs.length)) {
        p.push(`ips[${n}].interface ${JSON.stringify(ip.interface)} is not an index into interfaces`);
      }
    });
  }
  if (result.routes !== undefined && !Array.isArray(result.routes)) p.push('routes must be a list');
  return p;
}
