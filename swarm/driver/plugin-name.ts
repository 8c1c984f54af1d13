// The plugin's names and sockets, apart from the driver so the install commands load nothing heavy.
export const PLUGIN_NAME = 'midonet';
/** Where dockerd discovers a legacy plugin named midonet. */
export const DEFAULT_PLUGIN_SOCKET = `/run/docker/plugins/${PLUGIN_NAME}.sock`;
/** The agent socket a managed plugin's proxy forwards to: inside the run directory it mounts at /run/bees. */
export const AGENT_PLUGIN_SOCKET_NAME = 'docker-plugin.sock';
