// Measurements run in the background so a slow check (a webhook may take minutes) never holds a
// reconcile worker. A reconcile polls: it takes the result of a run that finished since the last poll
// (and writes it to status), and starts the work that is due. When a run finishes, `onFinished`
// enqueues the ModelDeployment. A run lost in a restart is simply measured again.
//
// Rollout analysis and post-promotion monitoring both run on this.

interface Finished<R> {
  tag: string;
  result: R;
}

export class BackgroundRuns<R> {
  private readonly inFlight = new Set<string>();
  private readonly finished = new Map<string, Finished<R>>();

  constructor(private readonly onFinished: (namespace: string, name: string) => void) {}

  /**
   * The result of a run that finished since the last take, if it was started for `tag` (e.g. the same
   * canary and step): a run for anything else is stale and is dropped.
   */
  take(key: string, tag: string): R | undefined {
    const done = this.finished.get(key);
    this.finished.delete(key);
    return done && done.tag === tag ? done.result : undefined;
  }

  busy(key: string): boolean {
    return this.inFlight.has(key);
  }

  /** Starts `work` unless a run for this key is in flight. */
  start(namespace: string, name: string, tag: string, work: () => Promise<R | undefined>): void {
    const key = `${namespace}/${name}`;
    if (this.inFlight.has(key)) return;
    this.inFlight.add(key);
    void work().then((result) => {
      if (result !== undefined) this.finished.set(key, { tag, result });
    }).catch(() => undefined).finally(() => {
      this.inFlight.delete(key);
      this.onFinished(namespace, name);
    });
  }

  forget(key: string): void {
    this.finished.delete(key);
  }
}
