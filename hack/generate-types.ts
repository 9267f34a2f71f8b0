// Generates operator/api/generated.ts from the CRD's OpenAPI schema, so the TypeScript types can never
// drift from what the apiserver validates. `make generate` writes it; the unit tests compare.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { compile } from 'json-schema-to-typescript';
import { crdSchema } from '../operator/api/schema.js';

type Node = Record<string, unknown>;

/** Maps Kubernetes' schema extensions onto what json-schema-to-typescript understands. */
function toTypeScriptSchema(node: Node, seen = new Map<Node, Node>()): Node {
  const cached = seen.get(node);
  if (cached) return cached;
  const out: Node = {};
  seen.set(node, out);
  for (const [key, value] of Object.entries(node)) {
    if (key.startsWith('x-kubernetes-') || key === 'anyOf' && node['x-kubernetes-int-or-string']) continue;
    if (key === 'properties' && value && typeof value === 'object') {
      out.properties = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toTypeScriptSchema(v as Node, seen)]));
    } else if ((key === 'items' || key === 'additionalProperties') && value && typeof value === 'object') {
      out[key] = toTypeScriptSchema(value as Node, seen);
    } else {
      out[key] = value;
    }
  }
  if (node['x-kubernetes-int-or-string']) out.tsType = 'number | string';
  else if (node['x-kubernetes-preserve-unknown-fields'] && !node.properties) {
    out.tsType = node.type === 'object' ? 'Record<string, unknown>' : 'unknown';
  }
  if (node.type === 'object' && !node.additionalProperties && !out.tsType) out.additionalProperties = false;
  return out;
}

export async function generateTypes(): Promise<string> {
  const schema = toTypeScriptSchema(crdSchema());
  (schema.properties as Node).metadata = { tsType: 'ObjectMeta' };
  return compile(schema, 'ModelDeployment', {
    bannerComment: [
      '// Generated from crds/modeldeployments.modelship.io.yaml by hack/generate-types.ts. Do not edit.',
      "import type { ObjectMeta } from './object.js';",
    ].join('\n'),
    additionalProperties: false,
    ignoreMinAndMaxItems: true,
    unknownAny: true,
    style: { singleQuote: true, printWidth: 120 },
  });
}

const target = fileURLToPath(new URL('../operator/api/generated.ts', import.meta.url));

if (process.argv[1] === fileURLToPath(import.meta.url)) writeFileSync(target, await generateTypes());
