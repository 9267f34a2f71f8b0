// The CRD, read once from crds/: the single source of truth for the ModelDeployment schema.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';

export const crdPath = fileURLToPath(new URL('../../crds/modeldeployments.modelship.io.yaml', import.meta.url));

export interface CustomResourceDefinition {
  metadata: { name: string };
  spec: { versions: { name: string; schema: { openAPIV3Schema: Record<string, unknown> } }[] };
}

let crd: CustomResourceDefinition | undefined;

export function loadCrd(): CustomResourceDefinition {
  crd ??= yaml.load(readFileSync(crdPath, 'utf8')) as CustomResourceDefinition;
  return crd;
}

/** The v1alpha1 OpenAPI v3 schema of a whole ModelDeployment object. */
export function crdSchema(): Record<string, unknown> {
  const version = loadCrd().spec.versions.find((v) => v.name === 'v1alpha1');
  if (!version) throw new Error('the CRD has no v1alpha1 version');
  return version.schema.openAPIV3Schema;
}
