#!/usr/bin/env node
// kubectl-modelship: look at and steer ModelDeployments. kubectl finds it on PATH as `kubectl modelship`.
// Steering writes exactly the annotations the operator documents (promote, abort, retry) or spec.paused
// and, for rollback, the spec of a history entry; it never touches status.
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import yaml from 'js-yaml';
import type { ModelDeployment, ModelDeploymentSpec } from '../api/generated.js';
import { ApiError, KubeClient, apiPath, type KubeList } from '../runtime/kube.js';
import { loadClusterAccess } from '../runtime/kubeconfig.js';
import { Resources } from '../runtime/resources.js';
import { abortAnnotation, captureBaselineAnnotation, promoteAnnotation, retryAnnotation, upgradeRuntimeAnnotation } from '../modeldeployment/rollout/operations.js';
import { historyView, listView, numberedHistory, statusView } from './plugin-view.js';

/** Distinct exit codes, so scripts can tell what went wrong. */
export const ExitCode = { ok: 0, error: 1, usage: 2, notFound: 3, precondition: 4, unreachable: 5 } as const;

class PluginError extends Error {
  constructor(message: string, readonly code: number) {
    super(message);
  }
}

const usage = `kubectl modelship: ModelDeployments from the command line

Usage:
  kubectl modelship list [-A]                         ModelDeployments in a namespace (-A: all)
  kubectl modelship status NAME [-w]                  revision, step, weights, analysis; -w follows it live
  kubectl modelship promote NAME [--full]             release the current step or gate (--full: skip to 100%)
  kubectl modelship abort NAME                        send all traffic back to stable and reject the canary
  kubectl modelship retry NAME                        roll out the rejected revision again
  kubectl modelship capture-baseline NAME             monitoring: capture the drift baselines again from the live window
  kubectl modelship upgrade-runtime NAME              roll the serving pods over to this operator's images (after an operator upgrade)
  kubectl modelship pause NAME | resume NAME          hold or continue a rollout (spec.paused)
  kubectl modelship history NAME                      revisions, newest last
  kubectl modelship rollback NAME --to-revision N     put history entry N's model, runtime, resources and scheduling back in the spec

Flags:
  -n, --namespace NS    --context CTX    --kubeconfig FILE    -o, --output json|yaml

Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 not possible now (e.g. no rollout in progress), 5 API unreachable.
`;

interface Options {
  namespace: string;
  allNamespaces: boolean;
  output: string | undefined;
  watch: boolean;
  full: boolean;
  toRevision: number | undefined;
}

function connect(kubeconfig: string | undefined, context: string | undefined): { client: KubeClient; namespace: string } {
  let access;
  try {
    access = loadClusterAccess({ ...(kubeconfig ? { kubeconfig } : {}), ...(context ? { context } : {}) });
  } catch (err) {
    throw new PluginError((err as Error).message, ExitCode.usage);
  }
  return { client: new KubeClient(access, undefined, 'kubectl-modelship/0.1.0'), namespace: access.namespace };
}

function explain(err: unknown, what: string): PluginError {
  if (err instanceof PluginError) return err;
  if (err instanceof ApiError) {
    if (err.code === 404) return new PluginError(`${what} not found`, ExitCode.notFound);
    if (err.code === 0) return new PluginError(`cannot reach the Kubernetes API: ${err.message}`, ExitCode.unreachable);
    if (err.code === 401 || err.code === 403) return new PluginError(`not allowed: ${err.message}`, ExitCode.error);
    return new PluginError(err.message, ExitCode.error);
  }
  return new PluginError((err as Error).message, ExitCode.error);
}

function print(value: unknown, output: string | undefined, human: () => string): void {
  if (output === 'json') process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  else if (output === 'yaml') process.stdout.write(yaml.dump(value, { noRefs: true, lineWidth: -1 }));
  else process.stdout.write(`${human()}\n`);
}

type Md = ModelDeployment & { metadata: NonNullable<ModelDeployment['metadata']> };

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        namespace: { type: 'string', short: 'n' },
        'all-namespaces': { type: 'boolean', short: 'A', default: false },
        context: { type: 'string' },
        kubeconfig: { type: 'string' },
        output: { type: 'string', short: 'o' },
        watch: { type: 'boolean', short: 'w', default: false },
        full: { type: 'boolean', default: false },
        'to-revision': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    process.stderr.write(`error: ${(err as Error).message}\n\n${usage}`);
    return ExitCode.usage;
  }
  const { values, positionals } = parsed;
  const [command, name] = positionals;
  if (values.help || !command) {
    process.stdout.write(usage);
    return values.help ? ExitCode.ok : ExitCode.usage;
  }
  if (values.output && !['json', 'yaml'].includes(values.output)) {
    process.stderr.write(`error: --output must be json or yaml\n`);
    return ExitCode.usage;
  }
  const needsName = command !== 'list';
  if (needsName && !name) {
    process.stderr.write(`error: ${command} needs the name of a ModelDeployment\n\n${usage}`);
    return ExitCode.usage;
  }
  const toRevision = values['to-revision'] !== undefined ? Number(values['to-revision']) : undefined;
  if (command === 'rollback' && (toRevision === undefined || !Number.isInteger(toRevision) || toRevision < 1)) {
    process.stderr.write('error: rollback needs --to-revision N (a REVISION from `kubectl modelship history`)\n');
    return ExitCode.usage;
  }
  try {
    const { client, namespace: defaultNamespace } = connect(values.kubeconfig, values.context);
    const opts: Options = {
      namespace: values.namespace ?? defaultNamespace, allNamespaces: values['all-namespaces'], output: values.output,
      watch: values.watch, full: values.full, toRevision,
    };
    return await dispatch(client, command, name ?? '', opts);
  } catch (err) {
    const e = explain(err, `modeldeployment "${name}"`);
    process.stderr.write(`error: ${e.message}\n`);
    return e.code;
  }
}

async function dispatch(client: KubeClient, command: string, name: string, opts: Options): Promise<number> {
  const get = async () => {
    try {
      return await client.get<Md>(Resources.ModelDeployment, opts.namespace, name);
    } catch (err) {
      throw explain(err, `modeldeployment "${name}" in namespace "${opts.namespace}"`);
    }
  };
  const annotate = (key: string, value: string) => client.mergePatch(Resources.ModelDeployment, opts.namespace, name, { metadata: { annotations: { [key]: value } } });
  const now = () => new Date();
  switch (command) {
    case 'list': {
      const list = await client.request<KubeList<Md>>('GET', apiPath(Resources.ModelDeployment, opts.allNamespaces ? undefined : opts.namespace));
      print(list.items, opts.output, () => listView(list.items, now(), opts.allNamespaces));
      return ExitCode.ok;
    }
    case 'status': {
      let md = await get();
      if (!opts.watch) {
        print(md, opts.output, () => statusView(md, now()));
        return ExitCode.ok;
      }
      // A live view: redraw on every change, and once a second for the clocks.
      let stop = false;
      process.once('SIGINT', () => { stop = true; });
      while (!stop) {
        if (process.stdout.isTTY) process.stdout.write('\x1b[2J\x1b[H');
        print(md, opts.output, () => `${statusView(md, now())}\n\n(watching; Ctrl-C to stop)`);
        await sleep(1000);
        md = await get();
      }
      return ExitCode.ok;
    }
    case 'promote':
    case 'abort': {
      const md = await get();
      const canary = md.status?.canaryRevision?.hash;
      if (!canary) throw new PluginError(`${name} has no rollout in progress (stable is ${md.status?.stableRevision?.hash ?? 'unknown'})`, ExitCode.precondition);
      if (command === 'promote') await annotate(promoteAnnotation, opts.full ? `${canary}/full` : canary);
      else await annotate(abortAnnotation, canary);
      process.stdout.write(`${command === 'promote' ? (opts.full ? 'full promotion' : 'promotion') : 'abort'} of revision ${canary} requested on modeldeployment/${name}\n`);
      return ExitCode.ok;
    }
    case 'retry': {
      const md = await get();
      const rejected = md.status?.rejectedRevision?.hash;
      if (!rejected) throw new PluginError(`${name} has no rejected revision to retry`, ExitCode.precondition);
      await annotate(retryAnnotation, rejected);
      process.stdout.write(`retry of revision ${rejected} requested on modeldeployment/${name}\n`);
      return ExitCode.ok;
    }
    case 'capture-baseline': {
      const md = await get();
      const stable = md.status?.stableRevision?.hash;
      if (!md.spec.monitoring?.checks?.some((c) => c.drift)) throw new PluginError(`${name} has no drift check in spec.monitoring`, ExitCode.precondition);
      if (!stable || md.status?.canaryRevision) throw new PluginError(`${name} is not monitoring now (a rollout is in progress or nothing serves yet)`, ExitCode.precondition);
      await annotate(captureBaselineAnnotation, stable);
      process.stdout.write(`new drift baselines requested for revision ${stable} on modeldeployment/${name}\n`);
      return ExitCode.ok;
    }
    case 'upgrade-runtime': {
      const md = await get();
      const stable = md.status?.stableRevision?.hash;
      const outdated = md.status?.conditions?.find((c) => c.type === 'RuntimeOutdated' && c.status === 'True');
      if (!stable || !outdated) throw new PluginError(`${name} already runs this operator's images (no RuntimeOutdated condition)`, ExitCode.precondition);
      await annotate(upgradeRuntimeAnnotation, stable);
      process.stdout.write(`runtime upgrade of revision ${stable} requested on modeldeployment/${name}: ${outdated.message ?? ''}\n`);
      return ExitCode.ok;
    }
    case 'pause':
    case 'resume': {
      await get();
      await client.mergePatch(Resources.ModelDeployment, opts.namespace, name, { spec: { paused: command === 'pause' } });
      process.stdout.write(`modeldeployment/${name} ${command === 'pause' ? 'paused' : 'resumed'}${command === 'pause' ? ' (in a GitOps setup, commit spec.paused instead)' : ''}\n`);
      return ExitCode.ok;
    }
    case 'history': {
      const md = await get();
      print(numberedHistory(md), opts.output, () => historyView(md, now()));
      return ExitCode.ok;
    }
    case 'rollback': {
      const md = await get();
      const target = numberedHistory(md).find((h) => h.revision === opts.toRevision);
      if (!target?.entry.spec) throw new PluginError(`${name} has no history revision ${opts.toRevision} (see kubectl modelship history ${name})`, ExitCode.notFound);
      const old = target.entry.spec as Partial<ModelDeploymentSpec>;
      // As `kubectl rollout undo`: the revision's fields go back into the spec; absent ones are removed.
      const patch: Record<string, unknown> = {};
      for (const field of ['model', 'runtime', 'resources', 'scheduling'] as const) patch[field] = old[field] ?? null;
      await client.request('PATCH', apiPath(Resources.ModelDeployment, opts.namespace, name), {
        body: [{ op: 'test', path: '/metadata/resourceVersion', value: md.metadata.resourceVersion },
          ...Object.entries(patch).map(([k, v]) => (v === null ? (md.spec[k as keyof ModelDeploymentSpec] !== undefined ? { op: 'remove', path: `/spec/${k}` } : undefined) : { op: 'add', path: `/spec/${k}`, value: v })).filter(Boolean)],
        contentType: 'application/json-patch+json',
      });
      process.stdout.write(`modeldeployment/${name} rolled back to revision ${opts.toRevision} (${target.entry.revision}, model ${target.entry.modelVersion}); in a GitOps setup, commit this spec instead\n`);
      return ExitCode.ok;
    }
    default:
      process.stderr.write(`error: unknown command "${command}"\n\n${usage}`);
      return ExitCode.usage;
  }
}

if (process.argv[1] && /kubectl-modelship(\.[jt]s)?$/.test(process.argv[1])) {
  process.exitCode = await run(process.argv.slice(2));
}
