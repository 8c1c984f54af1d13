// An rtnetlink client in-process (koffi → libc): the datapath's way to change links, addresses and routes,
// in any network namespace, without spawning `ip`.
export { KernelError } from './libc.js';
export { NetlinkSocket } from './socket.js';
export { inNamespace, openNamespace, openSocket, withNetlink } from './netns.js';
export {
  createVeth,
  deleteLink,
  deleteLinkGroup,
  getLink,
  listLinks,
  setLink,
  IFF_UP,
  type Link,
  type LinkChange,
  type LinkRef,
  type VethSpec,
} from './link.js';
export { deleteAddress, listAddresses, replaceAddress, IFA_F_NODAD, type Address } from './address.js';
export { canonicalDestination, deleteRoute, listRoutes, replaceRoute, RTN, type Route, type RouteSpec, type RouteType } from './route.js';
export { listNeighbours, replaceNeighbour, deleteNeighbour, type Neighbour } from './neighbour.js';
export { deleteFdb, listFdb, setBridgeFdb, setTunnelFdb, type FdbEntry } from './fdb.js';
export { listRules, type Rule } from './rule.js';
export { listQdiscs, type Qdisc } from './qdisc.js';
