// Shape validation with ajv: compiles the model schemas once and turns ajv's errors into one sentence that names
// the field at fault ("subnets[0].cidr: must be string", "unknown field \"colour\""), shared by the topology
// service and the REST API so both answer a malformed request in the same words.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { SCHEMAS, type JsonSchema } from '../model/schema.js';
import type { Kind } from '../model/types.js';
import { TopologyError } from './errors.js';

/** Strict: no type coercion, no removal of unknown fields, no defaults (the service fills those itself). */
export function strictAjv(): Ajv {
  return new Ajv({ allErrors: false, coerceTypes: false, removeAdditional: false, useDefaults: false, strict: false });
}

const ajv = strictAjv();
const cache = new Map<string, ValidateFunction>();

function validatorFor(kind: Kind, shape: 'object' | 'create' | 'patch'): ValidateFunction {
  const key = `${kind}/${shape}`;
  let fn = cache.get(key);
  if (!fn) {
    fn = ajv.compile(SCHEMAS[kind][shape]);
    cache.set(key, fn);
  }
  return fn;
}

/** "/subnets/0/cidr" -> "subnets[0].cidr" */
export function fieldOfPointer(pointer: string, prefix = ''): string {
  let out = prefix;
  for (const raw of pointer.split('/').slice(1)) {
    const part = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^[0-9]+$/.test(part) ? `[${part}]` : out ? `.${part}` : part;
  }
  return out;
}

function join(base: string, name: string): string {
  return base ? `${base}.${name}` : name;
}

/** One ajv error as a sentence naming the field, plus that field. */
export function describeAjvError(e: ErrorObject, prefix = ''): { message: string; field: string } {
  const at = fieldOfPointer(e.instancePath, prefix);
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties': {
      const field = join(at, String(params.additionalProperty));
      return { field, message: `unknown field "${field}"` };
    }
    case 'required': {
      const field = join(at, String(params.missingProperty));
      return { field, message: `missing required field "${field}"` };
    }
    case 'type':
      return {
        field: at,
        message: `${at || 'body'} must be ${params.type === 'integer' ? 'an integer' : `of type ${String(params.type)}`}`,
      };
    case 'enum':
      return {
        field: at,
        message: `${at || 'value'} must be one of ${(params.allowedValues as unknown[])
          .filter((v) => v !== null)
          .map((v) => JSON.stringify(v))
          .join(', ')}`,
      };
    case 'pattern':
      return { field: at, message: `${at || 'value'} has invalid characters (must match ${String(params.pattern)})` };
    default:
      return { field: at, message: `${at || 'value'} ${e.message ?? 'is invalid'}` };
  }
}

/** Validates `value` against a kind's schema; throws TopologyError('invalid') naming the field. */
export function checkShape<T>(kind: Kind, shape: 'object' | 'create' | 'patch', value: unknown): T {
  const fn = validatorFor(kind, shape);
  if (!fn(value)) {
    const { message, field } = describeAjvError(fn.errors![0]!);
    throw new TopologyError('invalid', `${kind}: ${message}`, field || undefined);
  }
  return value as T;
}

/** Compiles any schema with the shared strict options (used by the API for params and bodies). */
export function compileStrict(schema: JsonSchema): ValidateFunction {
  return ajv.compile(schema);
}
