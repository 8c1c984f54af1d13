// The web view: the topology as a live graph (cytoscape), fed by GET /v1/events, and a trace form drawn on it.
// Plain JavaScript the browser runs as served (no build, no framework). The API token is kept in sessionStorage
// (gone when the tab closes) and sent as the Authorization header on every request, the event stream included:
// the stream is read with fetch() because EventSource cannot send a header, and a token in a URL would end up in
// logs and history. See core/ui/README.md.

const TOKEN_KEY = 'bees-api-token';
/** How long to wait before reconnecting a dropped stream, growing to the last value. */
const BACKOFF_MS = [250, 1000, 2000, 5000];

const $ = (id) => document.getElementById(id);

/** The topology as the stream tells it: kind -> id -> object; and the live hosts (host id -> record). */
const model = { objects: new Map(), live: {}, seq: undefined };
let lastEventId;
let streamAbort;
let cy;
let traceState;

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

function authHeaders(extra = {}) {
  const t = token();
  return t ? { ...extra, authorization: `Bearer ${t}` } : extra;
}

function setConn(text, cls) {
  const el = $('conn');
  el.textContent = text;
  el.className = cls || '';
}

function showLogin(message) {
  $('login').hidden = false;
  $('logout').hidden = true;
  setConn(message, 'down');
  $('token').focus();
}

// ---- the event stream -------------------------------------------------------------------------------------------

/** Reads one server-sent-events response, calling onEvent(name, data, id) per event. */
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let event = 'message';
      let id;
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const v = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event = v;
        else if (field === 'data') data.push(v);
        else if (field === 'id') id = v;
      }
      if (data.length) onEvent(event, JSON.parse(data.join('\n')), id);
    }
  }
}

async function connect() {
  streamAbort?.abort();
  const abort = new AbortController();
  streamAbort = abort;
  let attempt = 0;
  while (!abort.signal.aborted) {
    try {
      const headers = authHeaders({ accept: 'text/event-stream' });
      if (lastEventId !== undefined) headers['last-event-id'] = lastEventId;
      const res = await fetch('/v1/events', { headers, signal: abort.signal, cache: 'no-store' });
      if (res.status === 401) return showLogin(token() ? 'the API refused this token' : 'this API needs a token');
      if (!res.ok) throw new Error(`GET /v1/events: ${res.status}`);
      $('login').hidden = true;
      $('logout').hidden = !token();
      setConn('live', 'live');
      attempt = 0;
      await readEvents(res.body, onEvent);
      throw new Error('the stream ended');
    } catch (err) {
      if (abort.signal.aborted) return;
      const wait = BACKOFF_MS[Math.min(attempt++, BACKOFF_MS.length - 1)];
      setConn(`disconnected (${err.message}); retrying`, 'down');
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

let lastEventAt = 0;
/** The last events and drawings with their wall-clock times, for measuring the view's lag (window.bees.timeline). */
const timeline = [];
function mark(what, seq) {
  timeline.push([what, seq, Date.now()]);
  if (timeline.length > 100) timeline.shift();
}
function onEvent(name, data, id) {
  lastEventAt = performance.now();
  mark(name, data.seq);
  if (id !== undefined) lastEventId = id;
  if (name === 'snapshot') {
    model.objects = new Map();
    for (const [kind, list] of Object.entries(data.objects)) model.objects.set(kind, new Map(list.map((o) => [o.id, o])));
    model.live = data.hosts;
    model.seq = data.seq;
  } else if (name === 'change') {
    let byId = model.objects.get(data.kind);
    if (!byId) model.objects.set(data.kind, (byId = new Map()));
    if (data.type === 'delete') byId.delete(data.id);
    else byId.set(data.id, data.value);
    model.seq = data.seq;
  } else if (name === 'hosts') {
    model.live = data;
  } else if (name === 'error') {
    setConn(`stream error: ${data.message}`, 'down');
    return;
  }
  scheduleRender();
}

// ---- the graph --------------------------------------------------------------------------------------------------

const list = (kind) => [...(model.objects.get(kind)?.values() ?? [])];
const get = (kind, id) => model.objects.get(kind)?.get(id);

/** The graph's elements for the model: compound tenants and hosts, devices, ports and their links. */
function elements() {
  const nodes = [];
  const edges = [];
  const have = new Set();
  const node = (id, data, classes) => {
    have.add(id);
    if (data.parent === undefined) delete data.parent;
    nodes.push({ group: 'nodes', data: { id, ...data }, classes });
  };
  const edge = (id, source, target, classes, label = '') => {
    if (have.has(source) && have.has(target)) edges.push({ group: 'edges', data: { id, source, target, label }, classes });
  };
  for (const t of list('Tenant')) node(`tenant:${t.id}`, { label: `tenant ${t.name}` }, 'tenant');
  const hostIds = new Set([...list('Host').map((h) => h.id), ...Object.keys(model.live)]);
  for (const id of hostIds) {
    const h = get('Host', id);
    const up = Object.hasOwn(model.live, id);
    node(`host:${id}`, { label: `${h?.name ?? id} (${up ? 'live' : 'down'})` }, up ? 'host live' : 'host dead');
  }
  const tenantOf = (tenantId) => (tenantId && have.has(`tenant:${tenantId}`) ? `tenant:${tenantId}` : undefined);
  for (const b of list('Bridge')) {
    const cidrs = b.subnets.map((s) => s.cidr).join(' ');
    node(`bridge:${b.id}`, { label: `${b.name}\n${cidrs}`, parent: tenantOf(b.tenantId) }, 'bridge');
  }
  for (const r of list('Router')) node(`router:${r.id}`, { label: r.name, parent: tenantOf(r.tenantId) }, 'router');
  for (const lb of list('LoadBalancer')) {
    const r = get('Router', lb.routerId);
    node(`lb:${lb.id}`, { label: 'load balancer', parent: tenantOf(r?.tenantId) }, 'lb');
    edge(`e:lb:${lb.id}`, `router:${lb.routerId}`, `lb:${lb.id}`, 'lb-link');
  }
  for (const v of list('Vip')) {
    const pool = get('Pool', v.poolId);
    const lb = pool && get('LoadBalancer', pool.loadBalancerId);
    const r = lb && get('Router', lb.routerId);
    node(`vip:${v.id}`, { label: `VIP ${v.address}:${v.port}/${v.protocol}`, parent: tenantOf(r?.tenantId) }, 'vip');
    if (lb) edge(`e:vip:${v.id}`, `lb:${lb.id}`, `vip:${v.id}`, 'lb-link');
  }
  const ports = list('Port');
  for (const p of ports) {
    if (p.type === 'router') continue;
    // A bridge port peered with a router port is the router's link, drawn as an edge router - network.
    if (p.peerId && get('Port', p.peerId)?.type === 'router') continue;
    const who = p.owner ? p.owner.workloadId : p.interfaceName || p.id.slice(0, 8);
    const parent = p.hostId && have.has(`host:${p.hostId}`) ? `host:${p.hostId}` : undefined;
    node(`port:${p.id}`, { label: `${who}\n${p.ips.join(' ')}`, parent }, `port ${p.status}`);
    edge(`e:port:${p.id}`, `port:${p.id}`, `bridge:${p.bridgeId}`, 'port-link');
  }
  for (const p of ports) {
    if (p.type !== 'router') continue;
    const peer = p.peerId && get('Port', p.peerId);
    if (peer?.bridgeId) edge(`e:rport:${p.id}`, `router:${p.routerId}`, `bridge:${peer.bridgeId}`, 'router-link', p.ips.join(' '));
  }
  // Pool members: from the VIP to the workload port holding the member's address.
  const byIp = new Map();
  for (const p of ports) if (p.type === 'bridge') for (const ip of p.ips) byIp.set(ip, p.id);
  for (const m of list('PoolMember')) {
    const portId = byIp.get(m.address);
    for (const v of list('Vip').filter((x) => x.poolId === m.poolId)) {
      if (portId) edge(`e:member:${m.id}:${v.id}`, `vip:${v.id}`, `port:${portId}`, `member ${m.status}`, `:${m.port}`);
    }
  }
  return [...nodes, ...edges];
}

const GRAPH_STYLE = [
  {
    selector: 'node',
    style: {
      label: 'data(label)',
      'text-wrap': 'wrap',
      'font-size': 10,
      'text-valign': 'bottom',
      'text-margin-y': 4,
      color: '#1d2330',
      'border-width': 2,
    },
  },
  {
    selector: ':parent',
    style: {
      'text-valign': 'top',
      'text-margin-y': -4,
      'background-opacity': 0.06,
      'font-weight': 'bold',
      padding: 14,
    },
  },
  {
    selector: 'node.tenant',
    style: { 'border-style': 'dashed', 'border-color': '#8a94a6', 'background-color': '#8a94a6', shape: 'round-rectangle' },
  },
  { selector: 'node.host', style: { 'border-color': '#13795b', 'background-color': '#13795b', shape: 'round-rectangle' } },
  { selector: 'node.host.dead', style: { 'border-color': '#b42318', 'background-color': '#b42318', 'border-style': 'dotted' } },
  {
    selector: 'node.bridge',
    style: { shape: 'round-rectangle', width: 70, height: 26, 'background-color': '#cfe0fb', 'border-color': '#1f5fbf' },
  },
  { selector: 'node.router', style: { shape: 'ellipse', width: 34, height: 34, 'background-color': '#fde7c6', 'border-color': '#b26b00' } },
  {
    selector: 'node.lb, node.vip',
    style: { shape: 'diamond', width: 30, height: 30, 'background-color': '#e6d9f7', 'border-color': '#6a3fb0' },
  },
  { selector: 'node.port', style: { shape: 'ellipse', width: 16, height: 16, 'background-color': '#fff', 'border-color': '#4a5568' } },
  { selector: 'node.port.down', style: { 'border-style': 'dashed' } },
  { selector: 'edge', style: { width: 1.5, 'line-color': '#9aa3b2', 'curve-style': 'bezier', label: 'data(label)', 'font-size': 8 } },
  { selector: 'edge.router-link', style: { width: 2.5, 'line-color': '#b26b00' } },
  { selector: 'edge.lb-link, edge.member', style: { 'line-color': '#6a3fb0', 'line-style': 'dashed' } },
  { selector: 'node.traced', style: { 'border-color': '#13795b', 'border-width': 4, 'z-index': 10 } },
  { selector: 'edge.traced', style: { 'line-color': '#13795b', width: 4, 'z-index': 10 } },
  { selector: 'node.traced.dropped', style: { 'border-color': '#b42318' } },
  { selector: 'edge.traced.dropped', style: { 'line-color': '#b42318' } },
  { selector: 'node.trace-stop', style: { 'background-color': '#b42318', 'border-color': '#b42318' } },
  { selector: ':selected', style: { 'overlay-color': '#1f5fbf', 'overlay-opacity': 0.2 } },
];

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

/** Near an element already drawn: its compound, else a node it links to, so a new node starts where it belongs. */
function startingPoint(e, byId) {
  const near = [e.data.parent, ...[...byId.values()].filter((x) => x.data.source === e.data.id).map((x) => x.data.target)]
    .map((id) => id && cy.getElementById(id))
    .find((n) => n && n.nonempty());
  const c = near ? near.position() : { x: cy.width() / 2, y: cy.height() / 2 };
  return { x: c.x + (Math.random() - 0.5) * 40, y: c.y + (Math.random() - 0.5) * 40 };
}

/**
 * Applies the model to the graph as a difference: a change adds, removes or restyles only what it touched. A new
 * node is drawn at once beside its compound or its network; the layout that tidies the graph runs once that frame is
 * painted (it is the slow part: hundreds of ms on a loaded machine), from where nodes are, briefly.
 */
function render() {
  const began = performance.now();
  const els = elements();
  const byId = new Map(els.map((e) => [e.data.id, e]));
  const first = cy.nodes().empty();
  const built = performance.now();
  let moved = false;
  cy.batch(() => {
    // Gone, or now in another compound (removed and added again; removing a compound takes its children along).
    const stale = cy.elements().filter((el) => {
      const e = byId.get(el.id());
      return !e || (el.isNode() && (el.data('parent') ?? undefined) !== e.data.parent);
    });
    if (stale.nonempty()) {
      moved = moved || stale.nodes().nonempty();
      cy.remove(stale);
    }
    const fresh = els.filter((e) => cy.getElementById(e.data.id).empty());
    if (!first) for (const e of fresh) if (e.group === 'nodes') e.position = startingPoint(e, byId);
    if (fresh.length) {
      moved = moved || fresh.some((e) => e.group === 'nodes');
      cy.add(fresh);
    }
    for (const e of els) {
      const el = cy.getElementById(e.data.id);
      // Only the label: ids, ends and compounds are fixed once drawn (a change of those re-adds the element).
      if (el.data('label') !== e.data.label) el.data('label', e.data.label);
      el.classes(e.classes);
    }
  });
  const applied = performance.now();
  if (traceState) drawTrace(traceState);
  renderHostList();
  document.body.dataset.seq = String(model.seq ?? '');
  mark('drawn', model.seq);
  // How long the last drawing took and where, for whoever wonders why the view lags: window.bees.renderMs.
  const done = performance.now();
  window.bees.renderMs = Math.round(done - began);
  window.bees.renderPhases = {
    model: Math.round(built - began),
    graph: Math.round(applied - built),
    text: Math.round(done - applied),
    sinceEvent: Math.round(done - lastEventAt),
  };
  // cytoscape paints in its own frame callback, registered before this one: by the next frame, what was just added is
  // on the canvas. Then the layout, which may take long, moves things into place.
  const seq = model.seq;
  requestAnimationFrame(() => {
    mark('shown', seq);
    if (moved) scheduleLayout(first);
  });
}

let layoutQueued = false;
let layoutFromScratch = false;
function scheduleLayout(first) {
  layoutFromScratch ||= first;
  if (layoutQueued) return;
  layoutQueued = true;
  // Called from a frame callback: a timer fires after that frame is painted.
  setTimeout(() => {
    layoutQueued = false;
    const began = performance.now();
    const layout = { name: 'cose', animate: false, nodeDimensionsIncludeLabels: true, padding: 20, randomize: layoutFromScratch };
    cy.layout(layoutFromScratch ? layout : { ...layout, numIter: 100, initialTemp: 100 }).run();
    layoutFromScratch = false;
    window.bees.layoutMs = Math.round(performance.now() - began);
  }, 0);
}

// ---- the text view (for screen readers and for reading exact values) ----------------------------------------------

function renderHostList() {
  const ul = $('hosts');
  ul.replaceChildren();
  const ports = list('Port').filter((p) => p.type === 'bridge' && !(p.peerId && get('Port', p.peerId)?.type === 'router'));
  const groups = new Map();
  for (const p of ports) {
    const key = p.hostId ?? '';
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(p);
  }
  const hostIds = new Set([...list('Host').map((h) => h.id), ...Object.keys(model.live), ...groups.keys()]);
  for (const id of [...hostIds].sort()) {
    const li = document.createElement('li');
    const up = Object.hasOwn(model.live, id);
    li.textContent = id ? `${get('Host', id)?.name ?? id}: ${up ? 'live' : 'down'}` : 'not bound to a host';
    if (id && !up) li.className = 'down';
    li.dataset.host = id;
    const inner = document.createElement('ul');
    for (const p of (groups.get(id) ?? []).sort((a, b) => a.id.localeCompare(b.id))) {
      const item = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.dataset.port = p.id;
      button.textContent = `${p.owner?.workloadId ?? p.interfaceName ?? p.id} ${p.ips.join(' ')} (${p.status})`;
      button.addEventListener('click', () => select('Port', p.id));
      item.append(button);
      inner.append(item);
    }
    li.append(inner);
    ul.append(li);
  }
}

const KIND_OF_PREFIX = { tenant: 'Tenant', host: 'Host', bridge: 'Bridge', router: 'Router', lb: 'LoadBalancer', vip: 'Vip', port: 'Port' };

function select(kind, id) {
  const box = $('details');
  const obj = get(kind, id);
  box.replaceChildren();
  const h = document.createElement('h3');
  h.textContent = `${kind} ${obj?.name ?? id}`;
  const dl = document.createElement('dl');
  for (const [k, v] of Object.entries(obj ?? { id })) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = typeof v === 'string' ? v : JSON.stringify(v);
    dl.append(dt, dd);
  }
  box.append(h, dl);
  if (kind === 'Port') void showCounters(id, box);
}

/**
 * Per-port counters: packets and bytes of every rule on the port's path, and its logged drops
 * (GET /v1/ports/:id/counters). Only the agent that binds a port reads its kernel; any other API answers with a
 * message naming that host, shown as is. An API without the route says so.
 */
async function showCounters(portId, box) {
  const p = document.createElement('p');
  p.className = 'counters';
  box.append(p);
  try {
    const res = await fetch(`/v1/ports/${encodeURIComponent(portId)}/counters`, { headers: authHeaders() });
    const c = await res.json().catch(() => ({}));
    if (res.status === 404 && /^no route/.test(c.message ?? '')) {
      p.textContent = 'counters: not served by this API';
      return;
    }
    if (!res.ok) throw new Error(c.message ?? `HTTP ${res.status}`);
    p.textContent = c.drops
      ? `counters: drops logged ${c.drops.logged}${c.drops.lost ? `, ${c.drops.lost} lost` : ''}${c.drops.logging ? '' : ' (drop logging off)'}`
      : 'counters:';
    if (!Array.isArray(c.rules)) return;
    const table = document.createElement('table');
    table.className = 'counters';
    const head = table.createTHead().insertRow();
    for (const h of ['stage', 'chain', 'rule', 'packets', 'bytes']) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = h;
      head.append(th);
    }
    const body = table.createTBody();
    for (const r of c.rules) {
      const row = body.insertRow();
      const shared = r.sharedBy > 1 ? ` (shared by ${r.sharedBy} ports)` : '';
      for (const v of [r.stage, r.chainName ?? r.chainId, r.ruleId, `${r.packets}${shared}`, r.bytes])
        row.insertCell().textContent = String(v);
    }
    box.append(table);
  } catch (err) {
    p.textContent = `counters: ${err.message}`;
  }
}

// ---- trace ------------------------------------------------------------------------------------------------------

async function runTrace(ev) {
  ev.preventDefault();
  const out = $('trace-result');
  const body = { src: $('trace-src').value.trim(), dst: $('trace-dst').value.trim(), proto: $('trace-proto').value };
  const port = $('trace-port').value;
  if (port && body.proto !== 'icmp') body.port = Number(port);
  out.textContent = 'tracing…';
  try {
    const res = await fetch('/v1/trace', {
      method: 'POST',
      headers: authHeaders({ 'content-type': 'application/json' }),
      body: JSON.stringify(body),
    });
    const answer = await res.json();
    if (res.status === 401) return showLogin('the API refused this token');
    if (!res.ok) throw new Error(answer.message ?? `${res.status}`);
    traceState = answer;
    drawTrace(answer);
    describeTrace(answer, out);
  } catch (err) {
    traceState = undefined;
    drawTrace(undefined);
    out.replaceChildren();
    const p = document.createElement('p');
    p.className = 'error';
    p.textContent = `trace failed: ${err.message}`;
    out.append(p);
  }
}

/** Highlights the path: source port, its link, the network, the destination's link and port; where it stopped. */
function drawTrace(r) {
  cy.elements().removeClass('traced dropped trace-stop');
  if (!r) return;
  const path = [`port:${r.src.portId}`, `e:port:${r.src.portId}`, `bridge:${r.bridge.id}`];
  const stop = r.request.verdict === 'accept' ? undefined : r.request.stage;
  // A drop at the source port or the bridge never reaches the destination: its part of the path stays plain.
  if (!stop || stop === 'port-outbound' || stop === 'bridge-outbound') path.push(`e:port:${r.dst.portId}`, `port:${r.dst.portId}`);
  const els = cy.collection();
  for (const id of path) els.merge(cy.getElementById(id));
  els.addClass(r.delivered ? 'traced' : 'traced dropped');
  if (stop) {
    const where = stop.startsWith('port-') ? `port:${stop === 'port-inbound' ? r.src.portId : r.dst.portId}` : `bridge:${r.bridge.id}`;
    cy.getElementById(where).addClass('trace-stop');
  }
}

function describeTrace(r, out) {
  out.replaceChildren();
  const v = document.createElement('p');
  v.className = `verdict ${r.delivered ? 'delivered' : 'dropped'}`;
  v.textContent = r.delivered ? 'delivered' : 'not delivered';
  out.append(v);
  const legs = [['request', r.request]];
  if (r.reply) legs.push(['reply', r.reply]);
  for (const [title, leg] of legs) {
    const p = document.createElement('p');
    p.textContent = `${title}: ${leg.verdict.toUpperCase()}${leg.stage ? ` at ${leg.stage}` : ''}${leg.ruleId ? ` by rule ${leg.ruleId}` : ''}`;
    const ol = document.createElement('ol');
    for (const h of leg.hops) {
      const li = document.createElement('li');
      li.textContent = `${h.stage} ${h.chainName ?? h.chainId}${h.ruleId ? ` rule ${h.ruleId}` : ''}: ${h.result}`;
      ol.append(li);
    }
    out.append(p, ol);
  }
  const pk = document.createElement('p');
  pk.textContent = `on network ${r.bridge.name}: ${r.src.ip} → ${r.dst.ip}`;
  out.append(pk);
}

// ---- start ------------------------------------------------------------------------------------------------------

function start() {
  cy = window.cytoscape({ container: $('graph'), style: GRAPH_STYLE, wheelSensitivity: 0.3, minZoom: 0.2, maxZoom: 3 });
  cy.on('tap', 'node', (ev) => {
    const [prefix, ...rest] = ev.target.id().split(':');
    const kind = KIND_OF_PREFIX[prefix];
    if (kind) select(kind, rest.join(':'));
  });
  $('login').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
    $('token').value = '';
    void connect();
  });
  $('logout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    streamAbort?.abort();
    showLogin('signed out');
  });
  $('trace').addEventListener('submit', (ev) => void runTrace(ev));
  $('trace-clear').addEventListener('click', () => {
    traceState = undefined;
    drawTrace(undefined);
    $('trace-result').replaceChildren();
  });
  // For tests and the curious (the browser console): the graph and the model it draws.
  window.bees = { cy, model, timeline };
  void connect();
}

start();
