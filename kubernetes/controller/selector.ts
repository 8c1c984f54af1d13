// Kubernetes label selectors (metav1.LabelSelector) evaluated against a label map, as apimachinery's
// LabelSelectorAsSelector does: every matchLabels pair and every matchExpressions requirement must hold; an empty
// selector matches everything. A NetworkPolicy peer's absent selector is "not given", never "everything": callers
// decide that before calling.

export interface LabelSelectorRequirement {
  key: string;
  operator: string;
  values?: string[] | undefined;
}

export interface LabelSelector {
  matchLabels?: Record<string, string> | undefined;
  matchExpressions?: LabelSelectorRequirement[] | undefined;
}

export type Labels = Readonly<Record<string, string>>;

export class SelectorError extends Error {}

/** Does `labels` satisfy `sel`? Throws SelectorError for an operator apimachinery would refuse. */
export function selectorMatches(sel: LabelSelector, labels: Labels | undefined): boolean {
  const l = labels ?? {};
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (l[k] !== v) return false;
  for (const r of sel.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    const values = r.values ?? [];
    switch (r.operator) {
      case 'In':
        if (!has || !values.includes(l[r.key]!)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(l[r.key]!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        throw new SelectorError(`unknown label selector operator ${JSON.stringify(r.operator)}`);
    }
  }
  return true;
}
