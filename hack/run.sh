#!/usr/bin/env bash
# make run: the local cluster, the CRD, the operator (built, as its own process) and the quickstart,
# then waits until the model is Ready and shows it.
#
# Where the machine allows it (root, containerd: test/cluster/real-node.ts), the cluster has a real
# node and the quickstart's model is a real one: trained here, served over HTTPS by a local model
# store, fetched and verified by the init container, and answering predictions through its Service.
# Elsewhere KWOK plays the node, and one line says why.
#   hack/run.sh        start everything (idempotent: a running operator is restarted on the new build);
#                      REAL_NODE=off keeps to KWOK even where a real node could run
#   hack/run.sh stop   stop the operator and the model store (make cluster-down stops the cluster too)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${CLUSTER_DIR:-$PWD/.cluster}
mkdir -p "$dir"
kubectl=.bin/kubectl

stop_pidfile() {
  local pidfile=$1
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")"
    for _ in $(seq 50); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
}

if [ "${1:-}" = stop ]; then stop_pidfile "$dir/operator.pid"; stop_pidfile "$dir/model-store.pid"; exit 0; fi

real_node=auto
if [ "${REAL_NODE:-auto}" = off ]; then
  why_no_node="REAL_NODE=off"
else
  why_no_node=$(node --import tsx -e "import('./test/cluster/real-node.ts').then((m) => process.stdout.write(m.realNodeUnsupported('.bin') ?? ''))")
fi
if [ -z "$why_no_node" ]; then
  echo "--- building the real node's images (cached after the first run)"
  # The quickstart's: the LLM images (vLLM for CPU takes about nine minutes cold) are for make test.
  if ! hack/images/build.sh pause operator mlserver torchserve custom-server; then why_no_node="the images did not build (see above)"; fi
fi
if [ -n "$why_no_node" ]; then
  real_node=off
  echo "--- no real node, KWOK plays the nodes and no model server runs: $why_no_node"
fi

echo "--- starting the cluster"
node --import tsx test/cluster/supervisor.ts up --detach --dir "$dir" --real-node "$real_node" --real-node-role workloads >/dev/null
state="$dir/state.json"
export KUBECONFIG="$dir/admin.kubeconfig"
netns=$(node -e "const s=require('$state'); process.stdout.write(s.realNode?.link.netns ?? '')")

echo "--- installing the CRD"
$kubectl apply --server-side -f crds/ >/dev/null
$kubectl wait --for=condition=Established crd/modeldeployments.modelship.io --timeout=30s >/dev/null

stop_pidfile "$dir/operator.pid"
if [ -n "$netns" ]; then
  host_ip=$(node -e "process.stdout.write(require('$state').realNode.link.hostIp)")
  node_ip=$(node -e "process.stdout.write(require('$state').realNode.link.nodeIp)")
  echo "--- training the iris models and serving them from https://$host_ip (logs: $dir/model-store.log)"
  stop_pidfile "$dir/model-store.pid"
  rm -f "$dir/model-store.json"
  nohup node --import tsx hack/model-store.ts --dir "$dir" --host "$host_ip" >>"$dir/model-store.log" 2>&1 &
  echo $! > "$dir/model-store.pid"
  for _ in $(seq 600); do [ -f "$dir/model-store.json" ] && break; kill -0 "$(cat "$dir/model-store.pid")" 2>/dev/null || { tail -20 "$dir/model-store.log"; exit 1; }; sleep 0.2; done

  echo "--- starting the operator in the node's network, where Services answer (logs: $dir/operator.log)"
  # No cluster DNS here: analysis reaches Services by ClusterIP. Its metrics listen on the node's address.
  metrics="$node_ip:18080"
  nohup nsenter --net="/run/netns/$netns" -- env MODELSHIP_SERVICE_ADDRESS=cluster-ip MODELSHIP_FETCHER_IMAGE=ghcr.io/modelship/modelship:0.1.0 \
    node dist/operator/main.js --metrics-port 18080 --metrics-host "$node_ip" --leader-election-namespace default >>"$dir/operator.log" 2>&1 &
else
  echo "--- starting the operator (logs: $dir/operator.log)"
  metrics="127.0.0.1:18080"
  nohup node dist/operator/main.js --metrics-port 18080 --metrics-host 127.0.0.1 --leader-election-namespace default >>"$dir/operator.log" 2>&1 &
fi
echo $! > "$dir/operator.pid"
for _ in $(seq 100); do
  curl -fs "http://$metrics/readyz" >/dev/null 2>&1 && break
  kill -0 "$(cat "$dir/operator.pid")" 2>/dev/null || { echo "the operator exited; see $dir/operator.log"; tail -20 "$dir/operator.log"; exit 1; }
  sleep 0.2
done

if [ -n "$netns" ]; then
  echo "--- applying examples/quickstart.yaml with its model from the local store (digest and CA included)"
  $kubectl create configmap model-store-ca --from-file=ca.crt=<(node -e "process.stdout.write(require('$dir/model-store.json').caCert)") \
    --dry-run=client -o yaml | $kubectl apply -f - >/dev/null
  node --input-type=module -e "
    import yaml from 'js-yaml';
    import fs from 'node:fs';
    const store = JSON.parse(fs.readFileSync('$dir/model-store.json', 'utf8'));
    const md = yaml.load(fs.readFileSync('examples/quickstart.yaml', 'utf8'));
    const path = 'sklearn/v1/model.joblib';
    md.spec.model = { ...md.spec.model, uri: store.urls[path], digest: store.digests[path], caConfigMap: 'model-store-ca' };
    // Two cores: small requests leave room for a canary beside two stable pods.
    md.spec.resources = { requests: { cpu: '100m', memory: '256Mi' }, limits: { memory: '1Gi' } };
    process.stdout.write(JSON.stringify(md));
  " | $kubectl apply -f -
else
  echo "--- applying examples/quickstart.yaml"
  $kubectl apply -f examples/quickstart.yaml
fi
if ! $kubectl wait --for=condition=Ready md/iris --timeout=180s; then
  # A kept .cluster already serves an older iris: applying the quickstart again starts a rollout, which
  # stops at the quickstart's manual gate. Say what it waits for instead of only "timed out".
  echo "--- iris is not Ready after 180 s; what it waits for:" >&2
  PATH=$PWD/.bin:$PATH kubectl modelship status iris >&2 || $kubectl describe md iris >&2
  echo "(a rollout at its manual gate continues with: KUBECONFIG=$KUBECONFIG PATH=$PWD/.bin:\$PATH kubectl modelship promote iris)" >&2
  exit 1
fi
echo
$kubectl get deployments,services,pods -l app.kubernetes.io/instance=iris
$kubectl get md iris

if [ -n "$netns" ]; then
  ip=$($kubectl get service iris -o jsonpath='{.spec.clusterIP}')
  body='{"inputs":[{"name":"input-0","shape":[2,4],"datatype":"FP64","data":[[5.1,3.5,1.4,0.2],[6.3,3.3,6.0,2.5]]}]}'
  predict="nsenter --net=/run/netns/$netns curl -s -H 'content-type: application/json' -d '$body' http://$ip/v2/models/iris/infer"
  v2_uri=$(node -e "process.stdout.write(require('$dir/model-store.json').urls['sklearn/v2/model.joblib'])")
  v2_digest=$(node -e "process.stdout.write(require('$dir/model-store.json').digests['sklearn/v2/model.joblib'])")
  echo
  echo "--- a prediction through the Service (ClusterIP $ip, inside the node's network namespace):"
  echo "\$ $predict"
  for _ in $(seq 50); do out=$(eval "$predict" 2>/dev/null) && [ -n "$out" ] && break; sleep 0.2; done
  echo "$out"
  served="The model is served. Roll out version 2 (retrained) as a canary and watch it:"
  v2_model="\"version\":\"2\",\"uri\":\"$v2_uri\",\"digest\":\"$v2_digest\""
  predict_line="Predict: $predict"
else
  served="The model is Ready (KWOK runs no server, so it answers no predictions). Roll out version 2 as a canary:"
  v2_model='"version":"2","uri":"https://models.example.com/iris/v2/model.joblib"'
  predict_line=""
fi
cat <<MSG

$served
  export KUBECONFIG=$KUBECONFIG PATH=$PWD/.bin:\$PATH
  kubectl get md -o wide
  kubectl patch md iris --type merge -p '{"spec":{"model":{$v2_model}}}'
  kubectl modelship status iris -w     # 25%, a 30 s pause, 50%, then a manual gate
  kubectl modelship promote iris       # in another terminal, at the gate
  kubectl modelship history iris
${predict_line:+$predict_line
}Metrics: curl -s $metrics/metrics | grep ^modelship_
Stop:    make cluster-down
MSG
