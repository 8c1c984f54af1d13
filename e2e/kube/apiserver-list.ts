// LIST on the API server double: label and field selectors over one kind (and namespace), sorted by
// namespace/name as etcd keys sort, paged with limit/continue. No snapshot reads: later pages come from the
// current state, labelled with the first page's RV; a continue token older than the history window is 410.
import { apiVersionOf, type Kind } from './kinds.js';
import { matchFields, matchLabels, parseFieldSelector, parseLabelSelector, type FieldRequirement, type Requirement } from './selectors.js';
import { clone, StatusError, type KObj, type Obj } from './apiserver-errors.js';
import type { ObjectStore } from './apiserver-store.js';

/** The objects of kind k (in ns, if given) that match the selectors; the stored objects themselves, not copies. */
export function select(store: ObjectStore, k: Kind, ns: string | undefined, labels: Requirement[], fields: FieldRequirement[]): KObj[] {
  const prefix = `${k.group}/${k.plural}/${ns === undefined ? '' : `${ns}/`}`;
  const out: KObj[] = [];
  for (const [key, o] of store.objects) {
    if (key.startsWith(prefix) && matchLabels(labels, o.metadata.labels) && matchFields(fields, o)) out.push(o);
  }
  return out.sort((a, b) =>
    `${a.metadata.namespace ?? ''}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace ?? ''}/${b.metadata.name}`),
  );
}

/** The in-process list: copies, selectors given as query strings. */
export function list(store: ObjectStore, k: Kind, ns?: string, labelSelector?: string, fieldSelector?: string): KObj[] {
  return select(store, k, ns, parseLabelSelector(labelSelector), parseFieldSelector(fieldSelector)).map(clone);
}

/** GET on a collection: the `<Kind>List` body. */
export function listResponse(store: ObjectStore, k: Kind, ns: string | undefined, q: URLSearchParams): Obj {
  const labels = parseLabelSelector(q.get('labelSelector') ?? undefined);
  const fields = parseFieldSelector(q.get('fieldSelector') ?? undefined);
  let items = select(store, k, ns, labels, fields);
  let listRv = store.rv;
  const cont = q.get('continue');
  let start = 0;
  if (cont) {
    const token = JSON.parse(Buffer.from(cont, 'base64url').toString()) as { rv: number; start: number };
    if (token.rv < store.compactedRv) {
      throw new StatusError(
        410,
        'Expired',
        'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.',
      );
    }
    // No snapshot reads: later pages come from the current state, labelled with the first page's RV.
    listRv = token.rv;
    start = token.start;
  }
  const rvParam = q.get('resourceVersion');
  if (rvParam && q.get('resourceVersionMatch') === 'Exact' && Number(rvParam) !== store.rv) {
    throw new StatusError(410, 'Expired', 'The resourceVersion for the provided list is too old.');
  }
  const limit = Number(q.get('limit') ?? 0);
  const metadata: Obj = { resourceVersion: String(listRv) };
  items = items.slice(start);
  if (limit > 0 && items.length > limit) {
    items = items.slice(0, limit);
    metadata.continue = Buffer.from(JSON.stringify({ rv: listRv, start: start + limit })).toString('base64url');
  }
  return {
    kind: `${k.kind}List`,
    apiVersion: apiVersionOf(k),
    metadata,
    // Real built-in lists leave kind and apiVersion out of the items.
    items: items.map((o) => {
      const { kind: _k, apiVersion: _a, ...rest } = o;
      return clone(rest);
    }),
  };
}
