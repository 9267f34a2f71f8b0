#!/usr/bin/env bash
# Installs the few Debian packages the tests and `make run` use, when they are missing:
# openssl (test PKI), util-linux's setpriv (children die with the test supervisor), curl, and the
# Prometheus server that rollout analysis is tested against, and Lua 5.1 for the Argo CD health script;
# as root also runc, the CNI plugins, mmdebstrap and iptables for a real node and its images (containerd
# itself is built from its Go module by hack/build-bins.sh).
# Go must already be on the machine: it builds the control plane from modules.
set -euo pipefail
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v setpriv >/dev/null || need+=(util-linux)
command -v curl >/dev/null || need+=(curl)
command -v prometheus >/dev/null || need+=(prometheus)
command -v lua5.1 >/dev/null || need+=(lua5.1)
# A real node (test/cluster/real-node.ts) and its images (hack/images): only as root, which the node needs.
# The packages' own services are not started: the node runs its containerd with a config of its own.
if [ "$(id -u)" = 0 ]; then
  command -v runc >/dev/null || need+=(runc)
  [ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
  command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
  command -v iptables >/dev/null || need+=(iptables)
  command -v ip >/dev/null || need+=(iproute2)
  command -v nsenter >/dev/null || need+=(util-linux)
  # The pause image is Kubernetes' pause.c, linked statically.
  { command -v gcc >/dev/null && [ -e /usr/lib/x86_64-linux-gnu/libc.a ]; } || need+=(gcc libc6-dev)
fi
if ! command -v go >/dev/null; then
  echo "Go is required to build the test control plane (https://go.dev/doc/install)" >&2
  exit 1
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "[system-deps] installing ${need[*]}" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  # policy-rc.d 101: no package starts a service on a machine that runs an init system.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' | $sudo tee $policy >/dev/null; $sudo chmod +x $policy; made_policy=1; fi
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  if [ "${made_policy:-}" = 1 ]; then $sudo rm -f $policy; fi
fi
