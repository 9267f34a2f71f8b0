#!/usr/bin/env bash
# Installs the few Debian packages the tests and `make run` use, when they are missing:
# openssl (test PKI), util-linux's setpriv (children die with the test supervisor), curl, and the
# Prometheus server that rollout analysis is tested against, and Lua 5.1 for the Argo CD health script.
# Go must already be on the machine: it builds the control plane from modules.
set -euo pipefail
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v setpriv >/dev/null || need+=(util-linux)
command -v curl >/dev/null || need+=(curl)
command -v prometheus >/dev/null || need+=(prometheus)
command -v lua5.1 >/dev/null || need+=(lua5.1)
if ! command -v go >/dev/null; then
  echo "Go is required to build the test control plane (https://go.dev/doc/install)" >&2
  exit 1
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "[system-deps] installing ${need[*]}" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
