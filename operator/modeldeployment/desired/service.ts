// The Service `<md>` in front of every serving revision (ReplicaRatio routing: the canary's share of
// traffic follows its share of ready pods).
import type { ModelDeployment } from '../../api/generated.js';
import type { KubeObject } from '../../runtime/kube.js';
import { instanceLabel, managedBy, managedByLabel, ownedMetadata } from '../labels.js';

export function servicePort(md: ModelDeployment): number {
  return md.spec.traffic?.port ?? 80;
}

export function desiredService(md: ModelDeployment): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: ownedMetadata(md),
    spec: {
      type: 'ClusterIP',
      selector: { [instanceLabel]: md.metadata!.name!, [managedByLabel]: managedBy },
      ports: [{ name: 'http', port: servicePort(md), targetPort: 'http', protocol: 'TCP' }],
    },
  };
}

export function serviceUrl(md: ModelDeployment): string {
  return `http://${md.metadata!.name!}.${md.metadata!.namespace!}.svc:${servicePort(md)}`;
}
