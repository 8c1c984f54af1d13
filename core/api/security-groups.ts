// REST routes of security groups (/v1/security-groups): a view over port groups, address groups, chains and rules
// that core/topology/security-groups.ts keeps consistent, one transaction per request.
import { idSchema, nameSchema, type JsonSchema } from '../model/schema.js';
import { SecurityGroups } from '../topology/security-groups.js';
import type { Topology } from '../topology/service.js';
import { idParams, route, type ApiRoute } from './routes.js';

/** An object schema that refuses unknown fields; literal, so the routes' inputs are typed from it. */
function obj<const P extends Record<string, JsonSchema>>(properties: P): { type: 'object'; additionalProperties: false; properties: P };
function obj<const P extends Record<string, JsonSchema>, const R extends readonly (keyof P & string)[]>(
  properties: P,
  required: R,
): { type: 'object'; additionalProperties: false; properties: P; required: R };
function obj(properties: Record<string, JsonSchema>, required: readonly string[] = []): JsonSchema {
  return { type: 'object', additionalProperties: false, properties, ...(required.length ? { required } : {}) };
}

const ruleInput = obj(
  {
    direction: { type: 'string', enum: ['ingress', 'egress'], description: 'ingress: to the members; egress: from them' },
    ethertype: { type: 'string', enum: ['ipv4', 'ipv6'] },
    protocol: { type: 'string', minLength: 1, maxLength: 8, description: 'tcp, udp, icmp, icmpv6, sctp, any or a protocol number' },
    portMin: { type: 'integer', minimum: 0, maximum: 65535, description: 'First destination port; ICMP: the type' },
    portMax: { type: 'integer', minimum: 0, maximum: 65535, description: 'Last destination port; ICMP: the code' },
    remoteCidr: { type: 'string', minLength: 4, maxLength: 68, description: 'Peer prefix' },
    remoteGroupId: { ...idSchema, description: "Peer security group (its members' addresses)" },
  },
  ['direction'],
);

const ruleSchema: JsonSchema = {
  ...ruleInput,
  title: 'SecurityGroupRule',
  properties: { id: idSchema, ...ruleInput.properties },
  required: ['id', 'direction', 'ethertype'],
};

export const SECURITY_GROUP_SCHEMA: JsonSchema = {
  title: 'SecurityGroup',
  type: 'object',
  required: ['id', 'tenantId', 'name', 'ipAddrGroupId', 'inboundChainId', 'outboundChainId', 'portIds', 'rules'],
  properties: {
    id: idSchema,
    tenantId: idSchema,
    name: nameSchema,
    ipAddrGroupId: idSchema,
    inboundChainId: { ...idSchema, description: 'Chain of the egress rules' },
    outboundChainId: { ...idSchema, description: 'Chain of the ingress rules' },
    portIds: { type: 'array', items: idSchema },
    rules: { type: 'array', items: ruleSchema },
  },
};

export function securityGroupRoutes(topology: Topology): ApiRoute[] {
  const sgs = new SecurityGroups(topology);
  const base = '/v1/security-groups';
  const sg = SECURITY_GROUP_SCHEMA;
  const portBody = obj({ portId: idSchema }, ['portId']);
  const tag = 'SecurityGroup';
  return [
    route({
      method: 'GET',
      url: base,
      operationId: 'listSecurityGroups',
      tag,
      summary: 'List security groups',
      schema: { querystring: obj({ tenantId: { type: 'string', minLength: 1, maxLength: 256 } }) },
      success: { status: 200, schema: { type: 'array', items: sg }, description: 'Security groups' },
      handler: ({ query }) => sgs.list(query.tenantId ? { tenantId: query.tenantId } : {}),
    }),
    route({
      method: 'POST',
      url: base,
      operationId: 'createSecurityGroup',
      tag,
      summary: 'Create a security group: a port group, an address group of its members and two chains',
      schema: { body: obj({ name: { ...nameSchema, maxLength: 100 }, tenant: nameSchema }, ['name']) },
      success: { status: 201, schema: sg, description: 'The created group' },
      handler: ({ body }) => sgs.create(body),
    }),
    route({
      method: 'GET',
      url: `${base}/:id`,
      operationId: 'getSecurityGroup',
      tag,
      summary: 'Get a security group, with its rules and ports',
      schema: { params: idParams },
      success: { status: 200, schema: sg, description: 'The group' },
      handler: ({ params }) => sgs.get(params.id),
    }),
    route({
      method: 'DELETE',
      url: `${base}/:id`,
      operationId: 'deleteSecurityGroup',
      tag,
      summary: "Delete a security group (409 while it has ports or another group's rule names it)",
      schema: { params: idParams },
      success: { status: 204, description: 'Deleted' },
      handler: async ({ params }) => {
        await sgs.delete(params.id);
      },
    }),
    route({
      method: 'POST',
      url: `${base}/:id/rules`,
      operationId: 'addSecurityGroupRule',
      tag,
      summary: 'Add an allow rule',
      schema: { params: idParams, body: ruleInput },
      success: { status: 201, schema: ruleSchema, description: 'The rule' },
      handler: ({ params, body }) => sgs.addRule(params.id, body),
    }),
    route({
      method: 'DELETE',
      url: `${base}/:id/rules/:ruleId`,
      operationId: 'removeSecurityGroupRule',
      tag,
      summary: 'Remove a rule',
      schema: { params: obj({ id: idSchema, ruleId: idSchema }, ['id', 'ruleId']) },
      success: { status: 204, description: 'Removed' },
      handler: async ({ params }) => {
        await sgs.removeRule(params.id, params.ruleId);
      },
    }),
    route({
      method: 'POST',
      url: `${base}/:id/attach`,
      operationId: 'attachSecurityGroup',
      tag,
      summary: 'Make a port a member: its filters then allow only what its groups allow, and return flows',
      schema: { params: idParams, body: portBody },
      success: { status: 200, schema: sg, description: 'The group' },
      handler: ({ params, body }) => sgs.attach(params.id, body.portId),
    }),
    route({
      method: 'POST',
      url: `${base}/:id/detach`,
      operationId: 'detachSecurityGroup',
      tag,
      summary: 'End a membership; a port with no group left is unfiltered again',
      schema: { params: idParams, body: portBody },
      success: { status: 200, schema: sg, description: 'The group' },
      handler: ({ params, body }) => sgs.detach(params.id, body.portId),
    }),
  ];
}
