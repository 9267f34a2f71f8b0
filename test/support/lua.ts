// Runs the Argo CD Lua scripts with the real Lua 5.1 interpreter (Argo CD embeds gopher-lua, a 5.1)
// against objects the operator produced.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const argocdDir = fileURLToPath(new URL('../../charts/modelship/argocd/', import.meta.url));

/** A JSON value as a Lua table constructor. */
export function toLua(value: unknown): string {
  if (value === null || value === undefined) return 'nil';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `{${value.map(toLua).join(', ')}}`;
  return `{${Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `[${JSON.stringify(k)}] = ${toLua(v)}`).join(', ')}}`;
}

export function lua(script: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('lua5.1', ['-e', script], { cwd: argocdDir }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
  });
}

export async function health(obj: unknown): Promise<{ status: string; message: string }> {
  const out = await lua(`obj = ${toLua(obj)}\nlocal hs = dofile("health.lua")\nio.write(hs.status, "\\n", hs.message)`);
  const [status = '', ...message] = out.split('\n');
  return { status, message: message.join('\n') };
}

/** Runs a resource action and returns the annotations it set. */
export async function action(name: string, obj: unknown): Promise<Record<string, string>> {
  const out = await lua(`obj = ${toLua(obj)}\nlocal o = dofile("actions/${name}/action.lua")\nfor k, v in pairs(o.metadata.annotations) do io.write(k, "=", v, "\\n") end`);
  return Object.fromEntries(out.trim().split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

export async function discovery(obj: unknown): Promise<Record<string, boolean>> {
  const out = await lua(`obj = ${toLua(obj)}\nlocal a = dofile("actions/discovery.lua")\nfor k, v in pairs(a) do io.write(k, "=", tostring(v.disabled), "\\n") end`);
  return Object.fromEntries(out.trim().split('\n').map((l) => [l.split('=')[0]!, l.split('=')[1] === 'true']));
}
