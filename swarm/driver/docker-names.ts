// libnetwork never tells a driver the name a user gave the network, only its id. The name is worth having on
// the bridge (`bees net ls` shows it), so the driver asks the daemon's API for it once the network exists.
import { request } from 'node:http';

/** GET a path of the Docker Engine API on a unix socket; undefined on any failure (the name is a nicety). */
function getJson(socketPath: string, path: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path, method: 'GET', timeout: timeoutMs, headers: { Host: 'docker' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => {
        if (res.statusCode !== 200) return resolve(undefined);
        try {
          resolve(JSON.parse(body));
        } catch {
          resolve(undefined);
        }
      });
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

/**
 * The name of a Docker network, polled for a while: the daemon stores the network only after the driver's
 * CreateNetwork answered. Stops early when `cancelled()` says so.
 */
export async function lookupNetworkName(
  dockerSocket: string,
  networkId: string,
  cancelled: () => boolean,
  attempts = 25,
  intervalMs = 200,
): Promise<string | undefined> {
  for (let i = 0; i < attempts && !cancelled(); i++) {
    const net = await getJson(dockerSocket, `/networks/${encodeURIComponent(networkId)}`, 2000);
    const name = (net as { Name?: unknown } | undefined)?.Name;
    if (typeof name === 'string' && name) return name;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  return undefined;
}
