// The libnetwork remote-driver wire format (moby libnetwork drivers/remote/api and ipams/remote/api), as the
// daemon sends it. Field names are Docker's, so a reader can hold this file next to the Go structs.
// Every request schema is checked before a handler runs: a malformed call is answered 400 and changes nothing.

export const NETWORK = 'NetworkDriver';
export const IPAM = 'IpamDriver';

/** One address pool of a network as libnetwork hands it to CreateNetwork/AllocateNetwork. */
export interface IpamData {
  AddressSpace?: string;
  /** CIDR of the pool. */
  Pool: string;
  /** Gateway in CIDR form ("10.1.0.1/24"). */
  Gateway?: string;
  /** Reserved addresses, name -> CIDR form. */
  AuxAddresses?: Record<string, string> | null;
}

/**
 * Option values are mostly strings, but libnetwork also puts booleans and the nested generic map here. The request
 * schemas accept null for an options map (Go marshals a nil map as null), so the request types say so too.
 */
export type DriverOptions = Record<string, unknown>;

export interface CreateNetworkRequest {
  NetworkID: string;
  Options?: DriverOptions | null;
  IPv4Data?: IpamData[] | null;
  IPv6Data?: IpamData[] | null;
}

export interface EndpointInterface {
  Address?: string;
  AddressIPv6?: string;
  MacAddress?: string;
}

export interface CreateEndpointRequest {
  NetworkID: string;
  EndpointID: string;
  Options?: DriverOptions | null;
  Interface?: EndpointInterface | null;
}

export interface JoinRequest {
  NetworkID: string;
  EndpointID: string;
  SandboxKey: string;
  Options?: DriverOptions | null;
}

export interface StaticRoute {
  Destination: string;
  /** 0: via NextHop; 1: directly connected. */
  RouteType: 0 | 1;
  NextHop?: string;
}

export interface JoinResponse {
  InterfaceName: { SrcName: string; DstPrefix: string };
  Gateway?: string;
  GatewayIPv6?: string;
  StaticRoutes?: StaticRoute[];
  DisableGatewayService?: boolean;
}

export interface EndpointRequest {
  NetworkID: string;
  EndpointID: string;
  Options?: DriverOptions | null;
}

export interface RequestPoolRequest {
  AddressSpace?: string;
  Pool?: string;
  SubPool?: string;
  Options?: Record<string, string> | null;
  V6?: boolean;
}

export interface RequestAddressRequest {
  PoolID: string;
  Address?: string;
  Options?: Record<string, string> | null;
}

export interface ReleaseAddressRequest {
  PoolID: string;
  Address: string;
}

/** libnetwork's option keys (netlabel package). */
export const Label = {
  generic: 'com.docker.network.generic',
  enableIPv6: 'com.docker.network.enable_ipv6',
  internal: 'com.docker.network.internal',
  portMap: 'com.docker.network.portmap',
  exposedPorts: 'com.docker.network.endpoint.exposedports',
  macAddress: 'com.docker.network.endpoint.macaddress',
  requestAddressType: 'RequestAddressType',
  gatewayType: 'com.docker.network.gateway',
} as const;

// JSON schemas (fastify/ajv). Extra fields are allowed: newer daemons add fields, and ignoring them is what
// the Go decoder does too.
const id = { type: 'string', minLength: 1, maxLength: 256 } as const;
const strMap = { type: ['object', 'null'], additionalProperties: { type: 'string' } } as const;
const anyMap = { type: ['object', 'null'] } as const;
const ipamData = {
  type: 'object',
  required: ['Pool'],
  properties: {
    AddressSpace: { type: 'string' },
    Pool: { type: 'string', minLength: 1 },
    Gateway: { type: 'string' },
    AuxAddresses: strMap,
  },
} as const;
const ipamList = { type: ['array', 'null'], items: ipamData } as const;
const iface = {
  type: ['object', 'null'],
  properties: { Address: { type: 'string' }, AddressIPv6: { type: 'string' }, MacAddress: { type: 'string' } },
} as const;

export const schemas = {
  networkIds: {
    type: 'object',
    required: ['NetworkID'],
    properties: { NetworkID: id, Options: anyMap },
  },
  createNetwork: {
    type: 'object',
    required: ['NetworkID'],
    properties: { NetworkID: id, Options: anyMap, IPv4Data: ipamList, IPv6Data: ipamList },
  },
  endpointIds: {
    type: 'object',
    required: ['NetworkID', 'EndpointID'],
    properties: { NetworkID: id, EndpointID: id, Options: anyMap },
  },
  createEndpoint: {
    type: 'object',
    required: ['NetworkID', 'EndpointID'],
    properties: { NetworkID: id, EndpointID: id, Options: anyMap, Interface: iface },
  },
  join: {
    type: 'object',
    required: ['NetworkID', 'EndpointID', 'SandboxKey'],
    properties: { NetworkID: id, EndpointID: id, SandboxKey: { type: 'string' }, Options: anyMap },
  },
  discover: {
    type: 'object',
    required: ['DiscoveryType'],
    properties: { DiscoveryType: { type: 'integer' } },
  },
  requestPool: {
    type: 'object',
    properties: {
      AddressSpace: { type: 'string' },
      Pool: { type: 'string' },
      SubPool: { type: 'string' },
      Options: strMap,
      V6: { type: 'boolean' },
    },
  },
  poolId: { type: 'object', required: ['PoolID'], properties: { PoolID: id } },
  requestAddress: {
    type: 'object',
    required: ['PoolID'],
    properties: { PoolID: id, Address: { type: 'string' }, Options: strMap },
  },
  releaseAddress: {
    type: 'object',
    required: ['PoolID', 'Address'],
    properties: { PoolID: id, Address: { type: 'string', minLength: 1 } },
  },
} as const;
