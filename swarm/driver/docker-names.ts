// libnetwork never tells a driver the name a user gave the network, only its id. The name is worth having on
// the bridge (`bees net ls` shows it), so the driver asks the daemon's API for it (through dockerode) once the
// network exists. dockerode is loaded on first use: it brings grpc, protobufjs and ssh2, tens of MB an agent that
// serves no Docker network should not carry.

/**
 * The name of a Docker network, polled for a while: the daemon stores the network only after the driver's
 * CreateNetwork answered. Stops early when `cancelled()` says so; undefined on any failure (the name is a nicety).
 */
export async function lookupNetworkName(
  dockerSocket: string,
  networkId: string,
  cancelled: () => boolean,
  attempts = 25,
  intervalMs = 200,
): Promise<string | undefined> {
  const { default: Docker } = await import('dockerode');
  const docker = new Docker({ socketPath: dockerSocket, timeout: 2000 });
  for (let i = 0; i < attempts && !cancelled(); i++) {
    const net = (await docker
      .getNetwork(networkId)
      .inspect()
      .catch(() => undefined)) as { Name?: unknown } | undefined;
    const name = net?.Name;
    if (typeof name === 'string' && name) return name;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  return undefined;
}
