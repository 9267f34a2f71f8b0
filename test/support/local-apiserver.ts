// A local HTTP server standing in for the apiserver, and the operator's API client pointed at it, for
// unit tests of the client's own behaviour (fencing, flow control). Closed when the test ends.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { KubeClient } from '../../operator/runtime/kube.js';
import { accessFromDocument } from '../../operator/runtime/kubeconfig.js';

export async function localApiserver(t: { teardown(fn: () => void): void }, handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<KubeClient> {
  const srv = createServer(handle);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => { srv.closeAllConnections(); srv.close(); });
  const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
  const access = accessFromDocument({
    'current-context': 'c',
    clusters: [{ name: 'c', cluster: { server: url } }],
    contexts: [{ name: 'c', context: { cluster: 'c' } }],
  });
  return new KubeClient(access, 'me');
}
