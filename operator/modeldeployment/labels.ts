// Labels and names of the objects the operator creates.
import type { ModelDeployment } from '../api/generated.js';

export const managedByLabel = 'app.kubernetes.io/managed-by';
export const managedBy = 'modelship';
export const instanceLabel = 'app.kubernetes.io/instance';
export const nameLabel = 'app.kubernetes.io/name';
export const componentLabel = 'app.kubernetes.io/component';
export const revisionLabel = 'modelship.io/revision';
export const roleLabel = 'modelship.io/role';
export const modelVersionLabel = 'modelship.io/model-version';

export const managedSelector = `${managedByLabel}=${managedBy}`;

export type Role = 'stable' | 'canary';

export const deploymentName = (md: ModelDeployment, hash: string) => `${md.metadata!.name!}-${hash}`;

export function commonLabels(md: ModelDeployment): Record<string, string> {
  return {
    [managedByLabel]: managedBy,
    [instanceLabel]: md.metadata!.name!,
    [nameLabel]: 'model-server',
  };
}

/** Pod labels must not include the role: a promotion would otherwise restart every canary pod. */
export function podLabels(md: ModelDeployment, hash: string): Record<string, string> {
  return { ...commonLabels(md), [revisionLabel]: hash, [modelVersionLabel]: md.spec.model.version };
}

/** Metadata of an object the ModelDeployment owns: same namespace, our labels, a controller reference. */
export function ownedMetadata(md: ModelDeployment, name: string = md.metadata!.name!, extraLabels: Record<string, string> = {}) {
  return {
    name,
    namespace: md.metadata!.namespace!,
    labels: { ...commonLabels(md), ...extraLabels },
    ownerReferences: [ownerReference(md)],
  };
}

export function ownerReference(md: ModelDeployment) {
  return {
    apiVersion: 'modelship.io/v1alpha1',
    kind: 'ModelDeployment',
    name: md.metadata!.name!,
    uid: md.metadata!.uid!,
    controller: true,
    blockOwnerDeletion: true,
  };
}
