// JSON Schemas (draft-07, the dialect fastify and ajv speak) for every kind of topology object, in three shapes:
//   object: the stored document, every field the type declares;
//   create: the input of a create; `id` and every defaulted field optional (the topology service fills them);
//   patch:  the input of an update; only mutable fields, none required, `null` clears an optional field.
// All three refuse unknown fields (additionalProperties: false) so a typo is a 400 naming the field, never a
// silently ignored setting. Shape only: addresses, references and uniqueness are checked by the service.
import type { Kind } from './types.js';
import { KINDS } from './types.js';

/** A JSON Schema as plain data (ajv and OpenAPI both take it as is). */
export type JsonSchema = Record<string, unknown>;

// ------------------------------------------------------------------------------------------- fragments

/**
 * Ids are store keys, znode names and journal keys: printable ASCII without '/', and not '.' or '..'. ZooKeeper
 * refuses more than control characters (U+007F-U+009F, surrogates, most private use, U+FFF0-U+FFFF), so the API
 * refuses every non-ASCII character rather than keep a copy of ZooKeeper's list (core/store/validate.ts checkId
 * is the store's own, looser check).
 */
export const idSchema = {
  type: 'string',
  minLength: 1,
  maxLength: 256,
  pattern: '^(?!\\.\\.?$)[\\x21-\\x2e\\x30-\\x7e]+$',
  description: 'Object id (usually a UUID)',
} as const satisfies JsonSchema;
/**
 * Linux interface names (dev_valid_name): at most 15 bytes, not '.' or '..', no '/', ':' or whitespace; no '%'
 * either (the kernel reads it as a template, "eth%d", and refuses any other). ASCII only, so 15 characters are
 * 15 bytes.
 */
const ifnameSchema: JsonSchema = {
  type: 'string',
  minLength: 1,
  maxLength: 15,
  pattern: '^(?!\\.\\.?$)[\\x21-\\x24\\x26-\\x2e\\x30-\\x39\\x3b-\\x7e]+$',
  description: 'Linux interface name',
};
/** Names users type: Docker's network-name alphabet plus '@' and '+' (orchestrator-derived names). */
export const nameSchema = {
  type: 'string',
  minLength: 1,
  maxLength: 128,
  pattern: '^[A-Za-z0-9][A-Za-z0-9_.@+-]*$',
} as const satisfies JsonSchema;
const ipSchema: JsonSchema = { type: 'string', minLength: 2, maxLength: 64, description: 'IPv4 or IPv6 address' };
const cidrSchema: JsonSchema = { type: 'string', minLength: 4, maxLength: 68, description: 'CIDR, e.g. 10.1.0.0/24' };
const macSchema: JsonSchema = { type: 'string', minLength: 12, maxLength: 17, description: 'MAC address' };
const optionsSchema: JsonSchema = {
  type: 'object',
  maxProperties: 256,
  additionalProperties: { type: 'string', maxLength: 4096 },
  propertyNames: { maxLength: 256 },
};
const boolSchema: JsonSchema = { type: 'boolean' };
const portNumber: JsonSchema = { type: 'integer', minimum: 1, maximum: 65535 };
const ids = (max = 1024): JsonSchema => ({ type: 'array', maxItems: max, items: idSchema });
const strEnum = (...values: string[]): JsonSchema => ({ type: 'string', enum: values });
const obj = (properties: Record<string, JsonSchema>, required: string[] = []): JsonSchema => ({
  type: 'object',
  additionalProperties: false,
  properties,
  ...(required.length ? { required } : {}),
});

export const TUNNEL_KEY_MAX = 16777215;

const subnetSchema = obj(
  {
    cidr: cidrSchema,
    gateway: { type: 'string', maxLength: 64, description: 'Gateway address inside cidr; "" for none' },
    reserved: { type: 'array', maxItems: 4096, items: ipSchema },
    range: cidrSchema,
    blockPrefix: { type: 'integer', minimum: 0, maximum: 128 },
  },
  ['cidr'],
);

const portRange = obj({ start: { type: 'integer', minimum: 0, maximum: 65535 }, end: { type: 'integer', minimum: 0, maximum: 65535 } }, [
  'start',
  'end',
]);

const conditionSchema = obj({
  conjunctionInv: boolSchema,
  matchForwardFlow: boolSchema,
  matchReturnFlow: boolSchema,
  noVlan: boolSchema,
  vlan: { type: 'integer', minimum: 0, maximum: 4095 },
  inPortIds: ids(),
  invInPorts: boolSchema,
  outPortIds: ids(),
  invOutPorts: boolSchema,
  portGroupSrc: idSchema,
  invPortGroupSrc: boolSchema,
  portGroupDst: idSchema,
  invPortGroupDst: boolSchema,
  ethertype: { type: 'integer', minimum: 0, maximum: 65535 },
  invEthertype: boolSchema,
  dlSrc: macSchema,
  dlSrcMask: macSchema,
  invDlSrc: boolSchema,
  dlDst: macSchema,
  dlDstMask: macSchema,
  invDlDst: boolSchema,
  nwTos: { type: 'integer', minimum: 0, maximum: 255 },
  invNwTos: boolSchema,
  nwProto: { type: 'integer', minimum: 0, maximum: 255 },
  invNwProto: boolSchema,
  nwSrc: cidrSchema,
  invNwSrc: boolSchema,
  nwDst: cidrSchema,
  invNwDst: boolSchema,
  tpSrc: portRange,
  invTpSrc: boolSchema,
  tpDst: portRange,
  invTpDst: boolSchema,
  ipAddrGroupSrc: idSchema,
  invIpAddrGroupSrc: boolSchema,
  ipAddrGroupDst: idSchema,
  invIpAddrGroupDst: boolSchema,
  traversedDevice: idSchema,
  invTraversedDevice: boolSchema,
  icmpDataSrcIp: cidrSchema,
  invIcmpDataSrcIp: boolSchema,
  icmpDataDstIp: cidrSchema,
  invIcmpDataDstIp: boolSchema,
  matchNwDstRewritten: boolSchema,
  fragmentPolicy: strEnum('any', 'header', 'nonheader', 'unfragmented'),
});

const natTarget = obj(
  {
    addressFrom: ipSchema,
    addressTo: ipSchema,
    portFrom: { type: 'integer', minimum: 0, maximum: 65535 },
    portTo: { type: 'integer', minimum: 0, maximum: 65535 },
  },
  ['addressFrom', 'addressTo', 'portFrom', 'portTo'],
);

const allocation = obj(
  {
    owner: { type: 'string', maxLength: 512 },
    ifname: { type: 'string', maxLength: 64 },
    hostId: idSchema,
    at: { type: 'integer', minimum: 0 },
  },
  ['owner', 'ifname', 'at'],
);

// ------------------------------------------------------------------------------------------ per kind

interface KindSpec {
  /** Every field of the stored object. */
  fields: Record<string, JsonSchema>;
  /** Fields the stored object always has (the rest are optional in the type too). */
  required: string[];
  /** Fields a create must give (everything else is optional and defaulted). */
  createRequired: string[];
  /** Fields only the service writes (never accepted in create or patch). */
  managed?: string[];
  /** Fields fixed at create (not in the patch). `id` always is. */
  immutable?: string[];
  /** Input-only convenience fields of a create (not stored). */
  createExtra?: Record<string, JsonSchema>;
}

const tenantExtra = { tenant: { ...nameSchema, description: 'Tenant name (created if missing); alternative to tenantId' } };

const SPECS: Record<Kind, KindSpec> = {
  Tenant: {
    fields: { id: idSchema, name: nameSchema, generation: { type: 'integer', minimum: 0 } },
    required: ['id', 'name', 'generation'],
    createRequired: ['name'],
    managed: ['generation'],
    immutable: ['name'],
  },
  Bridge: {
    fields: {
      id: idSchema,
      tenantId: idSchema,
      name: nameSchema,
      tunnelKey: { type: 'integer', minimum: 1, maximum: TUNNEL_KEY_MAX, description: 'VXLAN VNI, unique cluster-wide' },
      subnets: { type: 'array', maxItems: 64, items: subnetSchema },
      mtu: { type: 'integer', minimum: 68, maximum: 65535 },
      internal: boolSchema,
      adminStateUp: boolSchema,
      inboundFilterId: idSchema,
      outboundFilterId: idSchema,
      options: optionsSchema,
      labels: optionsSchema,
    },
    required: ['id', 'tenantId', 'name', 'tunnelKey', 'subnets', 'adminStateUp', 'options', 'labels'],
    createRequired: ['name'],
    immutable: ['tenantId'],
    createExtra: tenantExtra,
  },
  Router: {
    fields: {
      id: idSchema,
      tenantId: idSchema,
      name: nameSchema,
      adminStateUp: boolSchema,
      inboundFilterId: idSchema,
      outboundFilterId: idSchema,
      loadBalancerId: idSchema,
      snat: boolSchema,
      options: optionsSchema,
    },
    required: ['id', 'tenantId', 'name', 'adminStateUp', 'snat', 'options'],
    createRequired: ['name'],
    immutable: ['tenantId'],
    createExtra: tenantExtra,
  },
  Port: {
    fields: {
      id: idSchema,
      tenantId: idSchema,
      type: strEnum('bridge', 'router'),
      bridgeId: idSchema,
      routerId: idSchema,
      mac: macSchema,
      ips: { type: 'array', maxItems: 64, items: { type: 'string', maxLength: 68 } },
      peerId: idSchema,
      hostId: idSchema,
      interfaceName: ifnameSchema,
      owner: obj(
        {
          orchestrator: strEnum('cni', 'docker', 'mesos', 'kubernetes', 'cli', 'api'),
          workloadId: { type: 'string', minLength: 1, maxLength: 512, pattern: '^[^\\u0000-\\u001f\\u007f]+$' },
          ifname: ifnameSchema,
        },
        ['orchestrator', 'workloadId', 'ifname'],
      ),
      adminStateUp: boolSchema,
      status: strEnum('up', 'down', 'unknown'),
      portSecurity: boolSchema,
      inboundFilterId: idSchema,
      outboundFilterId: idSchema,
      portGroupIds: ids(),
      options: optionsSchema,
    },
    required: ['id', 'tenantId', 'type', 'mac', 'ips', 'adminStateUp', 'status', 'portSecurity', 'portGroupIds', 'options'],
    createRequired: [],
    managed: ['tenantId', 'peerId'],
    immutable: ['type', 'bridgeId', 'routerId'],
  },
  Host: {
    fields: {
      id: idSchema,
      name: { type: 'string', minLength: 1, maxLength: 253, pattern: '^[^\\u0000-\\u001f\\u007f/]+$' },
      addresses: { type: 'array', maxItems: 64, items: ipSchema },
      tunnelZones: { type: 'array', maxItems: 64, items: obj({ zoneId: idSchema, ip: ipSchema }, ['zoneId', 'ip']) },
      tunnelPort: portNumber,
      underlayMtu: { type: 'integer', minimum: 68, maximum: 65535 },
      version: { type: 'string', maxLength: 128 },
    },
    required: ['id', 'name', 'addresses', 'tunnelZones', 'tunnelPort'],
    createRequired: ['name'],
  },
  TunnelZone: {
    fields: { id: idSchema, name: nameSchema, type: strEnum('vxlan') },
    required: ['id', 'name', 'type'],
    createRequired: ['name'],
  },
  Route: {
    fields: {
      id: idSchema,
      routerId: idSchema,
      dst: cidrSchema,
      src: cidrSchema,
      nextHop: strEnum('port', 'blackhole', 'reject', 'local'),
      nextHopPortId: idSchema,
      nextHopGateway: ipSchema,
      weight: { type: 'integer', minimum: 0, maximum: 65535 },
    },
    required: ['id', 'routerId', 'dst', 'nextHop', 'weight'],
    createRequired: ['routerId', 'dst'],
    immutable: ['routerId'],
  },
  Chain: {
    fields: { id: idSchema, tenantId: idSchema, name: nameSchema },
    required: ['id', 'name'],
    createRequired: ['name'],
    immutable: ['tenantId'],
    createExtra: tenantExtra,
  },
  Rule: {
    fields: {
      id: idSchema,
      chainId: idSchema,
      position: { type: 'integer', minimum: 1, maximum: 1000000 },
      condition: conditionSchema,
      action: strEnum('accept', 'drop', 'reject', 'jump', 'return', 'continue', 'snat', 'dnat', 'rev_snat', 'rev_dnat'),
      jumpChainId: idSchema,
      natTargets: { type: 'array', maxItems: 64, items: natTarget },
      flowAction: strEnum('accept', 'continue', 'return'),
      description: { type: 'string', maxLength: 1024 },
    },
    required: ['id', 'chainId', 'position', 'condition', 'action'],
    createRequired: ['chainId', 'action'],
    immutable: ['chainId'],
  },
  PortGroup: {
    fields: { id: idSchema, tenantId: idSchema, name: nameSchema, stateful: boolSchema },
    required: ['id', 'tenantId', 'name', 'stateful'],
    createRequired: ['name'],
    immutable: ['tenantId'],
    createExtra: tenantExtra,
  },
  IpAddrGroup: {
    fields: {
      id: idSchema,
      tenantId: idSchema,
      name: nameSchema,
      addresses: { type: 'array', maxItems: 65536, items: { type: 'string', maxLength: 68 } },
    },
    required: ['id', 'tenantId', 'name', 'addresses'],
    createRequired: ['name'],
    immutable: ['tenantId'],
    createExtra: tenantExtra,
  },
  LoadBalancer: {
    fields: { id: idSchema, routerId: idSchema, adminStateUp: boolSchema },
    required: ['id', 'routerId', 'adminStateUp'],
    createRequired: ['routerId'],
    immutable: ['routerId'],
  },
  Pool: {
    fields: {
      id: idSchema,
      loadBalancerId: idSchema,
      protocol: strEnum('tcp', 'udp'),
      lbMethod: strEnum('round_robin', 'random'),
      healthMonitorId: idSchema,
      adminStateUp: boolSchema,
      memberRemoval: strEnum('drain', 'cut'),
    },
    required: ['id', 'loadBalancerId', 'protocol', 'lbMethod', 'adminStateUp'],
    createRequired: ['loadBalancerId'],
    immutable: ['loadBalancerId'],
  },
  PoolMember: {
    fields: {
      id: idSchema,
      poolId: idSchema,
      address: ipSchema,
      port: portNumber,
      weight: { type: 'integer', minimum: 0, maximum: 65535 },
      adminStateUp: boolSchema,
      status: strEnum('up', 'down', 'unknown'),
      backup: boolSchema,
    },
    required: ['id', 'poolId', 'address', 'port', 'weight', 'adminStateUp', 'status'],
    createRequired: ['poolId', 'address', 'port'],
    immutable: ['poolId'],
  },
  Vip: {
    fields: {
      id: idSchema,
      poolId: idSchema,
      address: ipSchema,
      port: portNumber,
      protocol: strEnum('tcp', 'udp'),
      sessionPersistence: strEnum('source_ip'),
      affinityTimeoutS: { type: 'integer', minimum: 1, maximum: 86400 },
      nodePort: portNumber,
      externalTrafficPolicy: strEnum('cluster', 'local'),
      internalTrafficPolicy: strEnum('cluster', 'local'),
    },
    required: ['id', 'poolId', 'address', 'port', 'protocol'],
    createRequired: ['poolId', 'address', 'port'],
    immutable: ['poolId'],
  },
  HealthMonitor: {
    fields: {
      id: idSchema,
      type: strEnum('tcp', 'http'),
      delay: { type: 'integer', minimum: 1, maximum: 3600 },
      timeout: { type: 'integer', minimum: 1, maximum: 3600 },
      maxRetries: { type: 'integer', minimum: 1, maximum: 100 },
      adminStateUp: boolSchema,
      urlPath: { type: 'string', pattern: '^/[\\x21-\\x7e]*$', maxLength: 1024 },
      expectedCodes: { type: 'string', pattern: '^[1-5][0-9]{2}(-[1-5][0-9]{2})?(,[1-5][0-9]{2}(-[1-5][0-9]{2})?)*$' },
    },
    required: ['id', 'type', 'delay', 'timeout', 'maxRetries', 'adminStateUp'],
    createRequired: [],
  },
  IpamBlock: {
    fields: {
      id: idSchema,
      bridgeId: idSchema,
      subnet: cidrSchema,
      cidr: cidrSchema,
      hostId: idSchema,
      allocations: { type: 'object', maxProperties: 1 << 16, additionalProperties: allocation },
    },
    required: ['id', 'bridgeId', 'subnet', 'cidr', 'allocations'],
    createRequired: ['bridgeId', 'subnet', 'cidr'],
    immutable: ['bridgeId', 'subnet', 'cidr'],
  },
};

/** A copy of `schema` that also accepts null (OpenAPI 3.0 / ajv `nullable`), used for clearing optional fields. */
function orNull(schema: JsonSchema): JsonSchema {
  const out: JsonSchema = { ...schema, nullable: true };
  if (Array.isArray(schema.enum)) out.enum = [...(schema.enum as unknown[]), null];
  return out;
}

function pick(fields: Record<string, JsonSchema>, drop: ReadonlySet<string>): Record<string, JsonSchema> {
  return Object.fromEntries(Object.entries(fields).filter(([k]) => !drop.has(k)));
}

export interface KindSchemas {
  object: JsonSchema;
  create: JsonSchema;
  patch: JsonSchema;
}

function build(kind: Kind): KindSchemas {
  const s = SPECS[kind];
  const managed = new Set(s.managed ?? []);
  const createFields = { ...pick(s.fields, managed), ...(s.createExtra ?? {}) };
  const fixed = new Set(['id', ...managed, ...(s.immutable ?? [])]);
  const patchFields = Object.fromEntries(
    Object.entries(pick(s.fields, fixed)).map(([k, v]) => [k, s.required.includes(k) ? v : orNull(v)]),
  );
  return {
    object: { title: kind, ...obj(s.fields, s.required) },
    create: { title: `${kind}Create`, ...obj(createFields, s.createRequired) },
    patch: { title: `${kind}Patch`, ...obj(patchFields) },
  };
}

export const SCHEMAS: Record<Kind, KindSchemas> = Object.fromEntries(KINDS.map((k) => [k, build(k)])) as Record<Kind, KindSchemas>;

/** The stored object's fields, e.g. to know which list filters make sense for a kind. */
export function fieldsOf(kind: Kind): string[] {
  return Object.keys(SPECS[kind].fields);
}

/** Fields the create input accepts but the object does not store (e.g. `tenant` by name). */
export function createExtrasOf(kind: Kind): string[] {
  return Object.keys(SPECS[kind].createExtra ?? {});
}
