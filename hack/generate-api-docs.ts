// Generates docs/api-reference.md from the CRD schema: every field with its type, constraints, default
// and description, and every CEL rule with its message. `make generate` writes it; a unit test fails
// when it is out of date.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { crdSchema } from '../operator/api/schema.js';

interface Schema {
  type?: string;
  description?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
  required?: string[];
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  maxItems?: number;
  maxProperties?: number;
  pattern?: string;
  default?: unknown;
  format?: string;
  'x-kubernetes-validations'?: { rule: string; message?: string }[];
  'x-kubernetes-int-or-string'?: boolean;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function typeOf(s: Schema): string {
  if (s['x-kubernetes-int-or-string']) return 'int or string';
  if (s.type === 'array') return `[]${s.items ? typeOf(s.items) : 'any'}`;
  if (s.type === 'object' && s.additionalProperties && typeof s.additionalProperties === 'object') return `map[string]${typeOf(s.additionalProperties)}`;
  if (!s.type && s['x-kubernetes-preserve-unknown-fields']) return 'any';
  return s.type ?? 'any';
}

function constraints(s: Schema): string {
  const out: string[] = [];
  if (s.enum) out.push(`one of ${s.enum.map((e) => `\`${String(e)}\``).join(', ')}`);
  if (s.minimum !== undefined || s.maximum !== undefined) out.push(`${s.minimum ?? ''}…${s.maximum ?? ''}`);
  if (s.maxLength !== undefined) out.push(`≤ ${s.maxLength} chars`);
  if (s.maxItems !== undefined) out.push(`≤ ${s.maxItems} items`);
  if (s.maxProperties !== undefined) out.push(`≤ ${s.maxProperties} keys`);
  if (s.pattern) out.push(`pattern \`${s.pattern}\``);
  if (s.format) out.push(s.format);
  if (s.default !== undefined) out.push(`default \`${JSON.stringify(s.default)}\``);
  return out.join('; ');
}

function walk(s: Schema, path: string, required: boolean, rows: string[], rules: string[], seen: Set<Schema>): void {
  if (path) rows.push(`| \`${path}\`${required ? ' *' : ''} | ${cell(typeOf(s))} | ${cell(constraints(s))} | ${cell(s.description ?? '')} |`);
  for (const v of s['x-kubernetes-validations'] ?? []) rules.push(`| \`${path || '(object)'}\` | ${cell(v.message ?? '')} | \`${cell(v.rule)}\` |`);
  // YAML anchors make shared sub-schemas the same object: describe each shape under its first path.
  if (seen.has(s)) return;
  seen.add(s);
  for (const [k, v] of Object.entries(s.properties ?? {})) walk(v, path ? `${path}.${k}` : k, (s.required ?? []).includes(k), rows, rules, seen);
  if (s.items?.properties && !seen.has(s.items)) {
    seen.add(s.items);
    walkChildren(s.items, `${path}[]`, rows, rules, seen);
  }
}

function walkChildren(s: Schema, path: string, rows: string[], rules: string[], seen: Set<Schema>): void {
  for (const v of s['x-kubernetes-validations'] ?? []) rules.push(`| \`${path}\` | ${cell(v.message ?? '')} | \`${cell(v.rule)}\` |`);
  for (const [k, v] of Object.entries(s.properties ?? {})) walk(v, `${path}.${k}`, (s.required ?? []).includes(k), rows, rules, seen);
}

export function generateApiDocs(): string {
  const root = crdSchema() as Schema;
  const section = (name: 'spec' | 'status') => {
    const rows: string[] = [];
    const rules: string[] = [];
    walk(root.properties![name]!, name, false, rows, rules, new Set());
    return { rows, rules };
  };
  const spec = section('spec');
  const status = section('status');
  const rootRules = (root['x-kubernetes-validations'] ?? []).map((v) => `| \`(object)\` | ${cell(v.message ?? '')} | \`${cell(v.rule)}\` |`);
  return [
    '# API reference: `modelship.io/v1alpha1` ModelDeployment',
    '',
    'Generated from `crds/modeldeployments.modelship.io.yaml` by `hack/generate-api-docs.ts` (`make generate`). Do not edit.',
    'Fields marked * are required. See [serving](serving.md) and [rollouts](rollouts.md) for what they do.',
    '',
    '## spec',
    '',
    '| field | type | constraints | description |',
    '|---|---|---|---|',
    ...spec.rows,
    '',
    '## Validation rules (CEL)',
    '',
    'The apiserver rejects a ModelDeployment that breaks any of these, with the message shown.',
    '',
    '| where | message | rule |',
    '|---|---|---|',
    ...rootRules,
    ...spec.rules,
    '',
    '## status',
    '',
    'Written by the operator only.',
    '',
    '| field | type | constraints | description |',
    '|---|---|---|---|',
    ...status.rows,
    '',
  ].join('\n');
}

const target = fileURLToPath(new URL('../docs/api-reference.md', import.meta.url));

if (process.argv[1] === fileURLToPath(import.meta.url)) writeFileSync(target, generateApiDocs());
