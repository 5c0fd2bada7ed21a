// Just enough OpenAPI 3.0 to hold an HTTP double to a published spec: find the operation of a
// request, and check a value against a schema (type, required, properties, items, enum,
// minimum, minLength, maxLength, pattern, nullable, $ref to components).
type Schema = {
  $ref?: string;
  type?: string;
  required?: string[];
  properties?: Record<string, Schema>;
  items?: Schema;
  enum?: unknown[];
  minimum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  nullable?: boolean;
};

export interface OpenApiDocument {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Schema> };
}

export interface Operation {
  operationId: string;
  parameters?: { name: string; in: string; required?: boolean; schema: Schema }[];
  requestBody?: { required?: boolean; content: Record<string, { schema: Schema }> };
  responses: Record<string, { content?: Record<string, { schema: Schema }> }>;
}

/** Problems of `value` against `schema`, each naming where: [] when it conforms. */
export function validate(doc: OpenApiDocument, schema: Schema, value: unknown, at = '$'): string[] {
  if (schema.$ref) return validate(doc, doc.components.schemas[schema.$ref.replace('#/components/schemas/', '')], value, at);
  if (value === null) return schema.nullable ? [] : [`${at}: must not be null`];
  const problems: string[] = [];
  const type = Array.isArray(value) ? 'array' : typeof value;
  if (schema.type === 'integer') {
    if (typeof value !== 'number' || !Number.isInteger(value)) return [`${at}: must be an integer`];
  } else if (schema.type && schema.type !== type) {
    return [`${at}: must be ${schema.type === 'object' ? 'an object' : `a ${schema.type}`}`];
  }
  if (schema.enum && !schema.enum.includes(value)) problems.push(`${at}: must be one of ${schema.enum.join(', ')}`);
  if (typeof value === 'number' && schema.minimum !== undefined && value < schema.minimum) problems.push(`${at}: must be at least ${schema.minimum}`);
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && value.length < schema.minLength) problems.push(`${at}: must have at least ${schema.minLength} characters`);
    if (schema.maxLength !== undefined && value.length > schema.maxLength) problems.push(`${at}: must have at most ${schema.maxLength} characters`);
    if (schema.pattern && !new RegExp(schema.pattern).test(value)) problems.push(`${at}: must match ${schema.pattern}`);
  }
  if (Array.isArray(value) && schema.items) value.forEach((v, i) => problems.push(...validate(doc, schema.items!, v, `${at}[${i}]`)));
  if (type === 'object' && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    for (const key of schema.required ?? []) if (!(key in obj)) problems.push(`${at}.${key}: is required`);
    for (const [key, sub] of Object.entries(schema.properties ?? {})) if (key in obj) problems.push(...validate(doc, sub, obj[key], `${at}.${key}`));
  }
  return problems;
}

/** The operation for a method and path, with its path parameters; null when the spec has none. */
export function findOperation(doc: OpenApiDocument, method: string, path: string): { operation: Operation; params: Record<string, string> } | null {
  for (const [template, ops] of Object.entries(doc.paths)) {
    const names: string[] = [];
    const pattern = new RegExp(`^${template.replace(/\{(\w+)\}/g, (_, n: string) => (names.push(n), '([^/]+)'))}$`);
    const m = pattern.exec(path);
    const operation = ops[method.toLowerCase()];
    if (m && operation) return { operation, params: Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(m[i + 1])])) };
  }
  return null;
}
