#!/usr/bin/env bash
# make test: lint, typecheck, unit tests, integration tests on a fresh real control plane with KWOK
# nodes, then the end-to-end tier on another with a real node (kubelet, containerd) serving real models.
# Ends with one line: "test: N passed, N failed". Lint and typecheck count as one check each.
set -uo pipefail
cd "$(dirname "$0")/.."
out=.test-output
rm -rf "$out"; mkdir -p "$out"
passed=0; failed=0

check() { # name command...
  local name=$1; shift
  echo "=== $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "--- $name FAILED"; fi
}

# ava's TAP summary ("# pass N", "# fail N") is the stable thing to count; the TAP stream is shown too.
ava_suite() { # name ava-args...
  local name=$1; shift
  echo "=== $name"
  local log="$out/$name.tap"
  "$@" --tap 2>&1 | tee "$log"
  local code=${PIPESTATUS[0]}
  local p f
  p=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$log" | tail -1)
  f=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$log" | tail -1)
  p=${p:-0}; f=${f:-0}
  # A crash, an uncaught exception or a timeout can fail the run without a failed test: count it.
  if [ "$code" != 0 ] && [ "$f" = 0 ]; then f=1; echo "--- $name exited with $code"; fi
  if [ "$p" = 0 ] && [ "$f" = 0 ]; then f=1; echo "--- $name ran no test"; fi
  passed=$((passed + p)); failed=$((failed + f))
}

check lint npm run --silent lint
check typecheck npm run --silent typecheck
ava_suite unit npx ava test/unit/
ava_suite integration node --import tsx test/cluster/supervisor.ts run -- npx ava --concurrency=1 test/integration/

# The real node needs root (containerd, network namespaces, cgroups); elsewhere the tier says why it did not run.
why_no_node=$(node --import tsx -e "import('./test/cluster/real-node.ts').then((m) => process.stdout.write(m.realNodeUnsupported('.bin') ?? ''))")
if [ -z "$why_no_node" ]; then
  check images hack/images/build.sh
  ava_suite e2e node --import tsx test/cluster/supervisor.ts run --real-node on -- npx ava --concurrency=1 --timeout=5m test/e2e/
else
  echo "=== e2e not run: $why_no_node"
fi

echo
echo "test: $passed passed, $failed failed"
[ "$failed" = 0 ]
