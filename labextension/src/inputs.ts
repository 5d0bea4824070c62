/**
 * A flow's declared inputs (`inputs:` in the flow file) as a form shows them, and what the
 * form's fields become: JSON values for a run (the server checks them with the flow's own
 * input rules, `jupyter_flow.inputs`), Python literals for a scheduled notebook's
 * parameters.
 *
 * Plain TypeScript with no DOM: the unit tests check it directly.
 */

/** One declared input. */
export interface DeclaredInput {
  name: string;
  /** string, text, number, integer, boolean, file, json, list, object, any */
  type: string;
  default: unknown;
  description: string | null;
  required: boolean;
}

/** How a form field edits an input of `type`. */
export type FieldKind = 'line' | 'text' | 'number' | 'boolean' | 'json';

export function fieldKind(type: string): FieldKind {
  switch (type) {
    case 'text':
      return 'text';
    case 'number':
    case 'integer':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'json':
    case 'list':
    case 'object':
    case 'any':
      return 'json';
    default:
      return 'line';
  }
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The inputs a flow document declares (its parsed `inputs` mapping), in file order. */
export function declaredInputs(inputs: unknown): DeclaredInput[] {
  if (!isMapping(inputs)) {
    return [];
  }
  return Object.entries(inputs).map(([name, raw]) => {
    const spec = isMapping(raw) ? raw : {};
    const value = spec.default ?? null;
    return {
      name,
      type: typeof spec.type === 'string' ? spec.type : 'string',
      default: value,
      description: typeof spec.description === 'string' ? spec.description : null,
      required: typeof spec.required === 'boolean' ? spec.required : value === null
    };
  });
}

/** The text a field starts with: the input's default as the field writes it. */
export function fieldText(input: DeclaredInput): string {
  const value = input.default;
  if (value === null || value === undefined) {
    return '';
  }
  if (fieldKind(input.type) === 'json' || typeof value === 'object') {
    return JSON.stringify(value);
  }
  return String(value);
}

/** A field's text as the value sent: a number for a number field, JSON read for a JSON
 * field, the text itself otherwise; `undefined` for an empty field (the input's default
 * then applies). Throws an Error naming the input when the text is not what its type
 * takes. */
export function fieldValue(input: DeclaredInput, text: string | boolean): unknown {
  const kind = fieldKind(input.type);
  if (kind === 'boolean') {
    return Boolean(text);
  }
  const raw = String(text);
  if (raw.trim() === '') {
    return undefined;
  }
  if (kind === 'number') {
    const number = Number(raw);
    if (!Number.isFinite(number)) {
      throw new Error(`input '${input.name}': '${raw}' is not a number`);
    }
    return number;
  }
  if (kind === 'json') {
    try {
      return JSON.parse(raw);
    } catch {
      throw new Error(`input '${input.name}': not JSON (${input.type}): ${raw.length > 60 ? `${raw.slice(0, 57)}...` : raw}`);
    }
  }
  return raw;
}

/** A JSON value as a Python literal (`true` is `True`, `null` is `None`; strings keep
 * JSON's escapes, which Python reads the same), for a notebook's parameters cell. */
export function pythonLiteral(value: unknown): string {
  if (value === null || value === undefined) {
    return 'None';
  }
  if (value === true) {
    return 'True';
  }
  if (value === false) {
    return 'False';
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) {
      throw new Error(`${value} has no Python literal a notebook can read`);
    }
    return String(value);
  }
  if (typeof value === 'string') {
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return `[${value.map(pythonLiteral).join(', ')}]`;
  }
  if (isMapping(value)) {
    return `{${Object.entries(value)
      .map(([k, v]) => `${JSON.stringify(k)}: ${pythonLiteral(v)}`)
      .join(', ')}}`;
  }
  throw new Error(`a ${typeof value} has no Python literal`);
}
