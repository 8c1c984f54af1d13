// Label and field selectors as kube-apiserver parses them, for the test API server.

type Obj = Record<string, unknown>;

export interface Requirement {
  key: string;
  op: 'in' | 'notin' | 'exists' | '!exists' | '=' | '!=';
  values: string[];
}

/** Split on commas that are not inside parentheses: `a in (x,y),b` → [`a in (x,y)`, `b`]. */
function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((x) => x.trim()).filter((x) => x !== '');
}

export class SelectorError extends Error {}

export function parseLabelSelector(s: string | undefined): Requirement[] {
  if (!s) return [];
  // The capture groups below are not optional, so they are set whenever the regex matches.
  return splitTop(s).map((term) => {
    let m = /^([^\s!=]+)\s+(in|notin)\s+\((.*)\)$/.exec(term);
    if (m) return { key: m[1]!, op: m[2] as 'in' | 'notin', values: m[3]!.split(',').map((v) => v.trim()) };
    m = /^([^\s!=]+)\s*(==|=|!=)\s*(.*)$/.exec(term);
    if (m) return { key: m[1]!, op: m[2] === '!=' ? '!=' : '=', values: [m[3]!.trim()] };
    m = /^!\s*([^\s!=]+)$/.exec(term);
    if (m) return { key: m[1]!, op: '!exists', values: [] };
    m = /^([^\s!=(),]+)$/.exec(term);
    if (m) return { key: m[1]!, op: 'exists', values: [] };
    throw new SelectorError(`unable to parse requirement: ${term}`);
  });
}

export function matchLabels(reqs: Requirement[], labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  return reqs.every((r) => {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    switch (r.op) {
      case 'exists':
        return has;
      case '!exists':
        return !has;
      case '=':
        return has && l[r.key] === r.values[0];
      case '!=':
        return !has || l[r.key] !== r.values[0];
      // In the next two, l[r.key] is read only when `has` is true.
      case 'in':
        return has && r.values.includes(l[r.key]!);
      case 'notin':
        return !has || !r.values.includes(l[r.key]!);
    }
  });
}

export interface FieldRequirement {
  path: string[];
  equal: boolean;
  value: string;
}

/** Field selectors: `a.b=v`, `a.b==v`, `a.b!=v`, comma = AND. Any dotted path is looked up in the object. */
export function parseFieldSelector(s: string | undefined): FieldRequirement[] {
  if (!s) return [];
  return splitTop(s).map((term) => {
    const m = /^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$/.exec(term);
    if (!m) throw new SelectorError(`invalid field selector: ${term}`);
    // All three groups are non-optional, so set on a match.
    return { path: m[1]!.split('.'), equal: m[2] !== '!=', value: m[3]! };
  });
}

function lookup(obj: Obj, path: string[]): string {
  let cur: unknown = obj;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return '';
    cur = (cur as Obj)[p];
  }
  // An absent field compares as the empty string, as in kube-apiserver (spec.nodeName= selects unscheduled pods).
  if (cur === undefined || cur === null) return '';
  // Field selectors address scalar fields (JSON strings, numbers and booleans).
  const scalar = cur as string | number | boolean;
  return String(scalar);
}

export function matchFields(reqs: FieldRequirement[], obj: Obj): boolean {
  return reqs.every((r) => (lookup(obj, r.path) === r.value) === r.equal);
}
