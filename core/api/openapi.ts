// The OpenAPI 3 document, generated from the route table and the model schemas (no hand-kept copy to drift).
import { SCHEMAS, type JsonSchema } from '../model/schema.js';
import { KINDS } from '../model/types.js';
import { ERROR_SCHEMA, errorRef, type ApiRoute } from './routes.js';
import { EVENTS_PATH_ITEM } from './events.js';

function parameters(where: 'path' | 'query', schema: JsonSchema | undefined): JsonSchema[] {
  if (!schema) return [];
  const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((schema.required ?? []) as string[]);
  return Object.entries(props).map(([name, s]) => ({ name, in: where, required: where === 'path' || required.has(name), schema: s }));
}

const errors: Record<string, string> = {
  400: 'Malformed request: the message names the field',
  401: 'Missing or wrong bearer token (TCP listeners with a token)',
  404: 'No such object or route',
  409: 'Conflict with stored objects (duplicate, overlap, still referenced)',
  413: 'Body too large',
  503: 'Store unavailable',
};

export function openApiDocument(routes: ApiRoute[], opts: { version: string; token: boolean }): JsonSchema {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const r of routes) {
    const path = r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const responses: Record<string, JsonSchema> = {
      [String(r.success.status)]: {
        description: r.success.description,
        ...(r.success.schema ? { content: { 'application/json': { schema: r.success.schema } } } : {}),
      },
    };
    for (const [code, description] of Object.entries(errors)) {
      if (code === '413' && !r.schema.body) continue;
      responses[code] = { description, content: { 'application/json': { schema: errorRef } } };
    }
    (paths[path] ??= {})[r.method.toLowerCase()] = {
      operationId: r.operationId,
      summary: r.summary,
      tags: [r.tag],
      parameters: [...parameters('path', r.schema.params), ...parameters('query', r.schema.querystring)],
      ...(r.schema.body ? { requestBody: { required: true, content: { 'application/json': { schema: r.schema.body } } } } : {}),
      responses,
    };
  }
  paths['/openapi.json'] = {
    get: { operationId: 'openapi', summary: 'This document', tags: ['Status'], responses: { 200: { description: 'OpenAPI 3 document' } } },
  };
  paths['/v1/events'] = EVENTS_PATH_ITEM;
  const schemas: Record<string, JsonSchema> = { Error: ERROR_SCHEMA };
  for (const k of KINDS) schemas[k] = SCHEMAS[k].object;
  return {
    openapi: '3.0.3',
    info: {
      title: 'MidoNet Bees topology API',
      version: opts.version,
      description: 'Virtual bridges, routers, ports, chains and load balancers of the MidoNet Bees topology.',
    },
    paths,
    components: {
      schemas,
      ...(opts.token ? { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } } : {}),
    },
    ...(opts.token ? { security: [{ bearer: [] }] } : {}),
  };
}
