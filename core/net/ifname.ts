// The kernel's rules for a network interface name (dev_valid_name in net/core/dev.c), checked in one place so
// every edge (the workload API, the CNI plugin, the datapath) refuses the same names, and refuses them before
// any address is allocated rather than when the kernel says no halfway through an attach.

/** IFNAMSIZ is 16 bytes including the terminating NUL. */
export const IFNAME_MAX_BYTES = 15;

/** The rules in words, for error messages. */
export const IFNAME_RULES = `1-${IFNAME_MAX_BYTES} bytes, not "." or "..", no whitespace, "/" or ":"`;

/** Why the kernel would refuse `name` as an interface name, or undefined when it would accept it. */
export function ifnameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `expected a string, got ${typeof name}`;
  if (name === '') return 'empty';
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > IFNAME_MAX_BYTES) return `${bytes} bytes long, at most ${IFNAME_MAX_BYTES}`;
  if (name === '.' || name === '..') return `${JSON.stringify(name)} is reserved`;
  // The kernel's isspace() (space, \t \n \v \f \r), and NUL, which would cut the name short on its way there.
  const bad = /[/: \t\n\v\f\r\0]/.exec(name);
  if (bad) return `contains ${JSON.stringify(bad[0])}`;
  return undefined;
}

export function validIfname(name: unknown): name is string {
  return ifnameProblem(name) === undefined;
}
