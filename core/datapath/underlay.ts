// Finding the underlay: the interface carrying the default route, its address and MTU.
import { inNetns, runJson } from './exec.js';

export interface Underlay {
  ifname: string;
  ip: string;
  mtu: number;
}

interface RouteGet {
  dev?: string;
  prefsrc?: string;
}
interface LinkJson {
  ifname: string;
  mtu: number;
}

/** The interface and source address used to reach `target` (default: the default route) and its MTU. */
export async function detectUnderlay(opts: { netns?: string; target?: string } = {}): Promise<Underlay> {
  const target = opts.target ?? '8.8.8.8';
  const routes = await runJson<RouteGet[]>(
    opts.netns,
    ['ip', '-j', 'route', 'get', target],
    `could not find the route to ${target} (is there a default route?)`,
  );
  const r = routes[0];
  if (!r?.dev || !r.prefsrc) throw new Error(`could not find the underlay: no source address for the route to ${target}`);
  const links = await runJson<LinkJson[]>(opts.netns, ['ip', '-j', 'link', 'show', 'dev', r.dev], `could not read ${r.dev}`);
  return { ifname: r.dev, ip: r.prefsrc, mtu: links[0]?.mtu ?? 1500 };
}

export { inNetns };
