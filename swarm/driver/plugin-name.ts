// The plugin's names and sockets, apart from the driver so the install commands load nothing heavy.
export const PLUGIN_NAME = 'midonet';
/** Where dockerd discovers a legacy plugin named midonet. */
export const DEFAULT_PLUGIN_SOCKET = `/run/docker/plugins/${PLUGIN_NAME}.sock`;
/**
 * The agent socket a managed plugin's proxy forwards to, relative to the agent's run directory. It has a directory
 * of its own because the managed plugin bind-mounts that directory, and only that: the plugin must not see the
 * agent's REST and workload sockets. (A bind mount of the socket file itself would keep pointing at the old inode
 * after an agent restart.)
 */
export const AGENT_PLUGIN_SOCKET_DIR = 'docker-plugin';
export const AGENT_PLUGIN_SOCKET_NAME = `${AGENT_PLUGIN_SOCKET_DIR}/agent.sock`;
/** The Docker daemon's API socket unless told otherwise. */
export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';
