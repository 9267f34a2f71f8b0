// Kubernetes Events (events.k8s.io/v1) about the objects the operator manages. Callers emit on
// transitions only, so a steady state produces no events; a failed event write is logged, never fatal.
import { randomBytes } from 'node:crypto';
import type { KubeClient, KubeObject } from './kube.js';
import { Resources } from './resources.js';
import type { Logger } from './logger.js';

export type EventType = 'Normal' | 'Warning';

/** MicroTime: RFC 3339 with exactly six fractional digits, as events.k8s.io requires. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class EventRecorder {
  constructor(
    private readonly client: KubeClient,
    private readonly controller: string,
    private readonly instance: string,
    private readonly log: Logger,
  ) {}

  async emit(regarding: KubeObject, type: EventType, reason: string, action: string, note: string): Promise<void> {
    const meta = regarding.metadata ?? {};
    const event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: `${meta.name ?? 'object'}.${Date.now().toString(16)}${randomBytes(2).toString('hex')}`, namespace: meta.namespace },
      eventTime: microTime(new Date()),
      reportingController: this.controller,
      reportingInstance: this.instance,
      action,
      reason,
      type,
      note: note.slice(0, 1024),
      regarding: { apiVersion: regarding.apiVersion, kind: regarding.kind, name: meta.name, namespace: meta.namespace, uid: meta.uid, resourceVersion: meta.resourceVersion },
    };
    try {
      await this.client.create(Resources.Event, event);
    } catch (err) {
      this.log.warn('could not record event', { reason, object: `${meta.namespace}/${meta.name}`, error: (err as Error).message });
    }
  }
}
