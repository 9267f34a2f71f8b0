#!/usr/bin/env bash
# Builds the test control plane from Go modules only: kube-apiserver, kube-controller-manager,
# kube-scheduler and kubectl (hack/k8s), etcd (hack/etcd), kwok (hack/kwok) and helm (hack/helm), and
# a real node's kubelet and kube-proxy (node: the same hack/k8s module, so the same Kubernetes version)
# and containerd 2.2 with its runc shim and ctr (hack/containerd: image volumes need containerd >= 2.1).
#
# Each component is its own Go module so minimal version selection never mixes their dependency
# graphs (etcd and kwok would otherwise move Kubernetes' grpc/otel versions).
#
# Binaries are cached outside the repository, keyed by the pinned go.mod/go.sum, so a fresh clone on
# the same machine links to them instead of rebuilding. `.bin/` in the repository holds symlinks to
# the binaries in use. Set KUBEBUILDER_ASSETS to a directory that already holds some of etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and kubectl to use those instead of
# building them; MODELSHIP_BIN_CACHE moves the cache.
#
# The Gateway API CRDs (for GatewayAPI routing tests) come from the sigs.k8s.io/gateway-api module too,
# and Argo CD's Application CRD (for the dry run of examples/argocd-application.yaml) from the
# github.com/argoproj/argo-cd/v3 module: nothing is compiled for either, the files are copied out. So
# do the Gateway API Inference Extension's InferencePool CRD (sigs.k8s.io/gateway-api-inference-extension)
# and KEDA's ScaledObject CRD (github.com/kedacore/keda/v2), for the large-model serving tests.
#
# kstatus (hack/kstatus) prints sigs.k8s.io/cli-utils' kstatus verdict for objects on stdin, so tests
# judge ModelDeployments with the code Flux, kpt and Config Sync use.
#
# The Argo Rollouts controller (hack/argo-rollouts, with its go.mod's k8s.io replace block) and its
# CRDs are built only on request (`make bench PEER=argo-rollouts`): the benchmark runs it beside the
# operator on the same workload.
#
# Usage: hack/build-bins.sh [component ...]   (components: k8s node containerd etcd kwok helm kstatus gateway-api argo-cd inference-extension keda argo-rollouts; default: all but argo-rollouts)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
hack="$root/hack"
cache_root="${MODELSHIP_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelship/bin}"

export GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0 GOTOOLCHAIN=local

k8s_version=$(sed -n 's#^[[:space:]]*k8s.io/kubernetes \(v[0-9.]*\).*$#\1#p' "$hack/k8s/go.mod" | head -n1)
[ -n "$k8s_version" ] || { echo "hack/k8s/go.mod does not require k8s.io/kubernetes" >&2; exit 1; }

log() { printf '[build-bins] %s\n' "$*" >&2; }

# The pin of a component: a hash of its module files and its build flags.
pin_of() {
  { cat "$hack/$1/go.mod" "$hack/$1/go.sum"; shift; echo "$*"; } | sha256sum | cut -c1-16
}

# Prints elapsed time every 30 s while a long cold compile runs, so nobody thinks it hung.
with_progress() {
  local what=$1; shift
  local start=$SECONDS
  "$@" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    if kill -0 "$pid" 2>/dev/null && (( (SECONDS - start) % 30 < 5 )); then
      log "$what: still compiling ($((SECONDS - start)) s)"
    fi
  done
  wait "$pid"
  log "$what: done in $((SECONDS - start)) s"
}

# [module=DIR] build_component COMPONENT DEST_DIR OUTPUT_NAMES... -- GO_BUILD_ARGS...
# The Go module is hack/COMPONENT unless module= names another folder of hack/.
build_component() {
  local component=$1 dest=$2; shift 2
  local dir=${module:-$component}
  local names=()
  while [ "$1" != "--" ]; do names+=("$1"); shift; done
  shift
  local pin; pin=$(pin_of "$dir" "$@")
  local stamp="$dest/.$component.pin"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$pin" ]; then
    local missing=0
    for n in "${names[@]}"; do [ -x "$dest/$n" ] || missing=1; done
    if [ $missing = 0 ]; then log "$component: up to date (${names[*]})"; return; fi
  fi
  log "$component: building ${names[*]} (cold builds take minutes; Go's caches make later ones fast)"
  (cd "$hack/$dir" && with_progress "$component" go build -trimpath "$@")
  echo "$pin" > "$stamp"
}

# The override directory must hold every binary of a component for that component to be skipped.
overridden() {
  [ -n "${KUBEBUILDER_ASSETS:-}" ] || return 1
  for n in "$@"; do [ -x "$KUBEBUILDER_ASSETS/$n" ] || return 1; done
  log "using ${*} from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
}

dest="$cache_root/k8s-${k8s_version}"
mkdir -p "$dest"

# Argo CD v3.6 needs Go 1.27; v3.5 builds with the Go this machine has, and its CRD is what we need.
argocd_version=v3.5.7
# Listing versions is refused by the proxy here, so the versions are named.
inference_extension_version=v1.6.0
keda_version=v2.21.0

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(k8s node containerd etcd kwok helm kstatus gateway-api argo-cd inference-extension keda)

for c in "${components[@]}"; do
  case "$c" in
    k8s)
      overridden kube-apiserver kube-controller-manager kube-scheduler kubectl && continue
      minor=$(echo "$k8s_version" | cut -d. -f2)
      ld="-s -w"
      for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld="$ld -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
      done
      build_component k8s "$dest" kube-apiserver kube-controller-manager kube-scheduler kubectl -- \
        -ldflags "$ld" -o "$dest/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
      ;;
    node)
      minor=$(echo "$k8s_version" | cut -d. -f2)
      ld="-s -w"
      for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld="$ld -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
      done
      # Built from the k8s module under a stamp of its own, so the control plane's cached pin still holds.
      module=k8s build_component node "$dest" kubelet kube-proxy -- \
        -ldflags "$ld" -o "$dest/" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
      ;;
    containerd)
      cv=$(sed -n 's#^[[:space:]]*github.com/containerd/containerd/v2 \(v[0-9.]*\).*$#\1#p' "$hack/containerd/go.mod" | head -n1)
      # Pure Go (as containerd's own static builds); btrfs needs cgo, devmapper and zfs are not used here.
      build_component containerd "$dest" containerd containerd-shim-runc-v2 ctr -- \
        -tags no_btrfs,no_devmapper,no_zfs,urfave_cli_no_docs \
        -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$cv" -o "$dest/" \
        github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
        github.com/containerd/containerd/v2/cmd/ctr
      ;;
    etcd) overridden etcd && continue; build_component etcd "$dest" etcd -- -ldflags "-s -w" -o "$dest/etcd" . ;;
    kwok) build_component kwok "$dest" kwok -- -ldflags "-s -w" -o "$dest/kwok" sigs.k8s.io/kwok/cmd/kwok ;;
    helm) build_component helm "$dest" helm -- -ldflags "-s -w" -o "$dest/helm" helm.sh/helm/v3/cmd/helm ;;
    kstatus) build_component kstatus "$dest" kstatus -- -ldflags "-s -w" -o "$dest/kstatus" . ;;
    argo-rollouts)
      ar_version=$(sed -n 's#^[[:space:]]*github.com/argoproj/argo-rollouts \(v[0-9.]*\).*$#\1#p' "$hack/argo-rollouts/go.mod" | head -n1)
      build_component argo-rollouts "$dest" rollouts-controller -- \
        -ldflags "-s -w -X github.com/argoproj/argo-rollouts/utils/version.version=${ar_version#v}" -o "$dest/rollouts-controller" \
        github.com/argoproj/argo-rollouts/cmd/rollouts-controller
      crds="$dest/argo-rollouts-$ar_version"
      if [ ! -f "$crds/rollout-crd.yaml" ]; then
        module_dir=$(cd "$hack/argo-rollouts" && go list -m -f '{{.Dir}}' github.com/argoproj/argo-rollouts)
        mkdir -p "$crds"
        cp "$module_dir"/manifests/crds/*-crd.yaml "$crds/"
        chmod u+w "$crds"/*.yaml
        log "argo-rollouts: $ar_version CRDs copied from the module"
      fi
      ;;
    gateway-api)
      gateway_version=v1.6.3
      crds="$dest/gateway-api-$gateway_version"
      if [ -f "$crds/gateway.networking.k8s.io_httproutes.yaml" ]; then log "gateway-api: up to date ($gateway_version CRDs)"; continue; fi
      module_dir=$(cd "$hack" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@$gateway_version" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
      mkdir -p "$crds"
      for kind in gatewayclasses gateways httproutes referencegrants; do
        cp "$module_dir/config/crd/standard/gateway.networking.k8s.io_$kind.yaml" "$crds/"
      done
      chmod u+w "$crds"/*.yaml
      log "gateway-api: $gateway_version CRDs copied from the module"
      ;;
    argo-cd | inference-extension | keda)
      # One CRD file copied out of a module that is downloaded, never built (Argo CD's is about 60 MB, once).
      case $c in
        argo-cd) module=github.com/argoproj/argo-cd/v3; version=$argocd_version; file=manifests/crds/application-crd.yaml ;;
        keda) module=github.com/kedacore/keda/v2; version=$keda_version; file=config/crd/bases/keda.sh_scaledobjects.yaml ;;
        *) module=sigs.k8s.io/gateway-api-inference-extension; version=$inference_extension_version; file=config/crd/bases/inference.networking.k8s.io_inferencepools.yaml ;;
      esac
      crds="$dest/$c-$version"
      if [ -f "$crds/$(basename "$file")" ]; then log "$c: up to date ($version CRD)"; continue; fi
      log "$c: downloading $module@$version for $(basename "$file")"
      info=$(cd "$hack" && GOFLAGS=-mod=mod go mod download -json "$module@$version") || { log "$c: go mod download failed: $info"; exit 1; }
      module_dir=$(printf '%s\n' "$info" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
      [ -f "$module_dir/$file" ] || { log "$c: no $file in the module ($module_dir)"; exit 1; }
      mkdir -p "$crds"
      cp "$module_dir/$file" "$crds/"
      chmod u+w "$crds"/*.yaml
      log "$c: $version CRD copied from the module"
      ;;
    *) log "unknown component: $c"; exit 2 ;;
  esac
done

# .bin/ links each binary to where it comes from: the override directory when it has it, else the cache.
mkdir -p "$root/.bin"
for n in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy containerd containerd-shim-runc-v2 ctr kwok helm kstatus rollouts-controller; do
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/$n" ]; then
    ln -sfn "$KUBEBUILDER_ASSETS/$n" "$root/.bin/$n"
  elif [ -x "$dest/$n" ]; then
    ln -sfn "$dest/$n" "$root/.bin/$n"
  fi
done
for d in "$dest"/gateway-api-*; do [ -d "$d" ] && ln -sfn "$d" "$root/.bin/gateway-api-crds"; done
if [ -d "$dest/argo-cd-$argocd_version" ]; then ln -sfn "$dest/argo-cd-$argocd_version" "$root/.bin/argocd-crds"; fi
if [ -d "$dest/inference-extension-$inference_extension_version" ]; then ln -sfn "$dest/inference-extension-$inference_extension_version" "$root/.bin/inference-extension-crds"; fi
for d in "$dest"/argo-rollouts-v*; do [ -d "$d" ] && ln -sfn "$d" "$root/.bin/argo-rollouts-crds"; done
if [ -d "$dest/keda-$keda_version" ]; then ln -sfn "$dest/keda-$keda_version" "$root/.bin/keda-crds"; fi
log "binaries linked into .bin/ (built ones cached in $dest)"
