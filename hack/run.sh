#!/usr/bin/env bash
# make run: the local control plane, the CRD, the operator (built, as its own process) and the
# quickstart, then waits until the model is Ready and shows it.
#   hack/run.sh        start everything (idempotent: a running operator is restarted on the new build)
#   hack/run.sh stop   stop the operator (make cluster-down stops the control plane too)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${CLUSTER_DIR:-$PWD/.cluster}
pidfile="$dir/operator.pid"

stop_operator() {
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")"
    for _ in $(seq 50); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
}

if [ "${1:-}" = stop ]; then stop_operator; exit 0; fi

export KUBECONFIG="$dir/admin.kubeconfig"
kubectl=.bin/kubectl
echo "--- installing the CRD"
$kubectl apply --server-side -f crds/ >/dev/null
$kubectl wait --for=condition=Established crd/modeldeployments.modelship.io --timeout=30s >/dev/null

echo "--- starting the operator (logs: $dir/operator.log)"
stop_operator
nohup node dist/operator/main.js --metrics-port 18080 --metrics-host 127.0.0.1 --leader-election-namespace default \
  >>"$dir/operator.log" 2>&1 &
echo $! > "$pidfile"
for _ in $(seq 100); do
  curl -fs http://127.0.0.1:18080/readyz >/dev/null 2>&1 && break
  kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo "the operator exited; see $dir/operator.log"; tail -20 "$dir/operator.log"; exit 1; }
  sleep 0.2
done

echo "--- applying examples/quickstart.yaml"
$kubectl apply -f examples/quickstart.yaml
$kubectl wait --for=condition=Ready md/iris --timeout=120s
echo
$kubectl get deployments,services,pods -l app.kubernetes.io/instance=iris
$kubectl get md iris
cat <<MSG

The model is served. Roll out version 2 as a canary and watch it:
  export KUBECONFIG=$KUBECONFIG PATH=$PWD/.bin:\$PATH
  kubectl get md -o wide
  kubectl patch md iris --type merge -p '{"spec":{"model":{"version":"2","uri":"https://models.example.com/iris/v2/model.joblib"}}}'
  kubectl modelship status iris -w     # 25%, a 30 s pause, 50%, then a manual gate
  kubectl modelship promote iris       # in another terminal, at the gate
  kubectl modelship history iris
Metrics: curl -s 127.0.0.1:18080/metrics | grep ^modelship_
Stop:    make cluster-down
MSG
