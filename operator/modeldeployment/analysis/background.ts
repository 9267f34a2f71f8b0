// Measurements run in the background so a slow check (a webhook may take minutes) never holds a
// reconcile worker. A reconcile polls: it gets the result of the newest finished run (and writes it to
// status), and starts the work that is due. When a run finishes, `onFinished` enqueues the
// ModelDeployment. A run lost in a restart is simply measured again.
//
// Two rules keep the measurements honest:
//  - A run belongs to a tag (a canary and its step, or a monitored revision). Once a poll sees another
//    tag, the run describes nothing that is still decided on: it is aborted at once, its requests with
//    it, and the run that is due for the new tag starts without waiting for the old one's timeout. An
//    aborted run's result is never used.
//  - A finished result is handed out on every poll until status records it. Handing it out only once
//    would lose the measurement whenever the status write of that reconcile fails (a conflict, a crash,
//    an apiserver error). So the result must be a complete value (measurements already folded into the
//    results they were taken against), never a delta: the decision made from it is then the same
//    however often it is polled.
//
// Rollout analysis and post-promotion monitoring both run on this.

interface Run {
  tag: string;
  abort: AbortController;
}

interface Finished<R> {
  tag: string;
  result: R;
}

export class BackgroundRuns<R> {
  private readonly inFlight = new Map<string, Run>();
  private readonly finished = new Map<string, Finished<R>>();

  constructor(private readonly onFinished: (namespace: string, name: string) => void) {}

  /**
   * The newest finished run's result for `tag`, until `recorded` says status holds it. A run for
   * another tag is stale: a finished one is dropped and one in flight is aborted.
   */
  current(key: string, tag: string, recorded: (result: R) => boolean): R | undefined {
    const running = this.inFlight.get(key);
    if (running && running.tag !== tag) this.abort(key);
    const done = this.finished.get(key);
    if (!done) return undefined;
    if (done.tag !== tag || recorded(done.result)) {
      this.finished.delete(key);
      return undefined;
    }
    return done.result;
  }

  busy(key: string): boolean {
    return this.inFlight.has(key);
  }

  /**
   * Starts `work` unless a run for this tag is in flight; one for another tag is aborted first.
   * `work` must pass the signal to every request it makes.
   */
  start(namespace: string, name: string, tag: string, work: (signal: AbortSignal) => Promise<R | undefined>): void {
    const key = `${namespace}/${name}`;
    const running = this.inFlight.get(key);
    if (running?.tag === tag) return;
    if (running) this.abort(key);
    const run: Run = { tag, abort: new AbortController() };
    this.inFlight.set(key, run);
    void (async () => {
      let result: R | undefined;
      try {
        result = await work(run.abort.signal);
      } catch {
        result = undefined;
      }
      // Aborted, or replaced by a run for another tag: whatever it measured no longer applies.
      if (this.inFlight.get(key) !== run) return;
      this.inFlight.delete(key);
      if (result !== undefined) this.finished.set(key, { tag, result });
      this.onFinished(namespace, name);
    })();
  }

  /** Aborts the run in flight for this key, if any; its result will not be used. */
  abort(key: string): void {
    const running = this.inFlight.get(key);
    if (!running) return;
    this.inFlight.delete(key);
    running.abort.abort(new DOMException('the run was superseded', 'AbortError'));
  }

  /** Drops everything held for this key: nothing it measured is wanted any more. */
  forget(key: string): void {
    this.abort(key);
    this.finished.delete(key);
  }
}
