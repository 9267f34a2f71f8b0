#!/usr/bin/env bash
# Builds the images a real node runs, with no registry and no container engine: root filesystems
# from Debian packages (mmdebstrap) and PyPI or npm, packed as OCI image layouts by hack/images/oci.ts.
# Each image carries exactly the name the operator or a preset uses, so pods run it unchanged with
# imagePullPolicy IfNotPresent once the archive is imported into the node's containerd.
#
#   hack/images/build.sh [IMAGE ...]   IMAGE: pause operator mlserver torchserve custom-server vllm tiny-llm (default: all)
#
# Images are cached outside the repository (~/.cache/modelship/images, or MODELSHIP_IMAGE_CACHE), keyed
# by a hash of their inputs: the image's recipe in this script, its own files and pins, and for the
# operator its sources and lockfile. .bin/images/NAME.tar (or MODELSHIP_IMAGE_LINKS) links to the archive in use;
# the test harness imports every archive there. What each image differs from upstream in: docs/images.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/hack/images"
cache="${MODELSHIP_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelship/images}"
export SOURCE_DATE_EPOCH=0
# Where the archives in use are linked: the test harness imports every archive in .bin/images.
links="${MODELSHIP_IMAGE_LINKS:-$root/.bin/images}"
# The LLM images are large (vLLM's is about 5 GB): linked apart, so that only test/e2e/llm.test.ts imports them.
llm_links="${MODELSHIP_LLM_IMAGE_LINKS:-$root/.bin/images-llm}"
mkdir -p "$cache" "$links" "$llm_links"
# Work directories of builds that were killed (an hour is far longer than any build).
find "$cache" -maxdepth 1 -name '.work-*' -mmin +60 -exec rm -rf {} +
log() { printf '[images] %s\n' "$*" >&2; }

# Debian release and mirror for every root filesystem.
suite=bookworm
mirror=${MODELSHIP_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# The recipe of an image: its build function and the helpers it uses, as bash prints them, so an edit
# elsewhere in this script rebuilds nothing.
recipe() { declare -f "$@"; echo "$suite $mirror"; }

key_of() { # files and directories whose content makes the image
  { for f in "$@"; do
      # Content only: a file's path would make every clone of the repository miss the cache.
      if [ -d "$f" ]; then (cd "$f" && find . -type f -not -path './node_modules/*' -print0 | sort -z | xargs -0 sha256sum); else sha256sum < "$f"; fi
    done; } | sha256sum | cut -c1-16
}

# Deterministic tar of a directory: sorted, fixed times, numeric owners as they are in the tree.
tar_dir() { # DIR OUT.tar
  tar --sort=name --mtime=@0 --numeric-owner --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$1" -cf "$2" .
}

pack() { # NAME:TAG CONFIG.json OUT LAYER.tar...
  local name=$1 config=$2 out=$3; shift 3
  local layers=()
  for l in "$@"; do layers+=(--layer "$l"); done
  node --import tsx "$here/oci.ts" --name "$name" --config "$config" --out "$out" "${layers[@]}"
}

# build IMAGE KEY [LINKS]: skips when the cached archive exists, else runs build_IMAGE into a work dir.
build() {
  local image=$1 key=$2 to=${3:-$links}
  local archive="$cache/$image-$key.tar"
  if [ -f "$archive" ]; then
    log "$image: up to date ($key)"
  else
    local work; work=$(mktemp -d "$cache/.work-$image-XXXXXX")
    local start=$SECONDS
    log "$image: building ($key)"
    # Not under `if`: bash ignores errexit in a condition, and a failed step must not be packed.
    local rc=0
    set +e; ( set -e; "build_${image//-/_}" "$work" ); rc=$?; set -e
    if [ "$rc" != 0 ]; then rm -rf "$work"; log "$image: build failed ($rc)"; return 1; fi
    mv "$work/image.tar" "$archive"
    rm -rf "$work"
    # Older builds go, but not the last few: another checkout on this machine may still use one.
    # Earlier versions stay for a switch back, but vLLM's are 4.4 GB each: only the one just built stays.
    local keep=3; [ "$image" = vllm ] && keep=1
    ls -1t "$cache/$image"-*.tar | tail -n +$((keep + 1)) | xargs -r rm -f
    log "$image: built in $((SECONDS - start)) s"
  fi
  ln -sfn "$archive" "$to/$image.tar"
}

# --- pause: Kubernetes' own pause.c, static, as registry.k8s.io/pause is built.
k8s_module_dir() {
  local v; v=$(sed -n 's#^[[:space:]]*k8s.io/kubernetes \(v[0-9.]*\).*$#\1#p' "$root/hack/k8s/go.mod" | head -n1)
  (cd "$root/hack/k8s" && GOWORK=off GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$v") | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'
}
build_pause() {
  local work=$1 src; src="$(k8s_module_dir)/build/pause/linux/pause.c"
  mkdir -p "$work/rootfs"
  gcc -Os -Wall -Werror -static -DVERSION=v3.10-modelship -o "$work/rootfs/pause" "$src"
  strip "$work/rootfs/pause"
  tar_dir "$work/rootfs" "$work/layer.tar"
  echo '{"User":"65535:65535","Entrypoint":["/pause"]}' > "$work/config.json"
  pack registry.k8s.io/pause:3.10 "$work/config.json" "$work/oci" "$work/layer.tar"
  mv "$work/oci.tar" "$work/image.tar"
}

# --- operator: the Dockerfile's content and user on a distroless-like base (libc, libstdc++, CA
# certificates, tzdata; no shell, no package manager), with Node from the npm `node` package.
operator_image=${MODELSHIP_OPERATOR_IMAGE:-ghcr.io/modelship/modelship:0.1.0}
distroless_base() { # OUT.tar: the files of distroless/cc-debian12's packages, users root and nonroot
  mmdebstrap --quiet --variant=extract --include=base-files,netbase,tzdata,ca-certificates,libc6,libgcc-s1,libstdc++6 \
    --customize-hook='cat "$1"/usr/share/ca-certificates/mozilla/*.crt > "$1/etc/ssl/certs/ca-certificates.crt"' \
    --customize-hook='printf "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n" > "$1/etc/passwd"' \
    --customize-hook='printf "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n" > "$1/etc/group"' \
    --customize-hook='mkdir -p "$1/tmp" "$1/home/nonroot" && chmod 1777 "$1/tmp" && chown 65532:65532 "$1/home/nonroot"' \
    --customize-hook='rm -rf "$1"/var/cache/apt "$1"/var/lib/apt/lists "$1"/usr/share/doc "$1"/usr/share/man' \
    "$suite" "$1" "$mirror"
}
build_operator() {
  local work=$1
  distroless_base "$work/base.tar"
  local app="$work/app"
  mkdir -p "$app/app" "$app/nodejs/bin"
  # The production dependencies exactly as the lockfile pins them, as the Dockerfile's `npm prune --omit=dev`.
  cp "$root/package.json" "$root/package-lock.json" "$app/app/"
  (cd "$app/app" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
  (cd "$root" && npx tsc -p tsconfig.build.json --outDir "$app/app/dist")
  cp -r "$root/crds" "$app/app/crds"
  cp "$(readlink -f "$root/node_modules/node/bin/node")" "$app/nodejs/bin/node"
  chmod -R a+rX "$app"
  tar_dir "$app" "$work/app.tar"
  cat > "$work/config.json" <<'JSON'
{"User":"65532:65532","WorkingDir":"/app",
 "Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt","NODE_OPTIONS=--max-semi-space-size=4 --max-old-space-size=384"],
 "Entrypoint":["/nodejs/bin/node","/app/dist/operator/main.js"],"Cmd":["run"]}
JSON
  pack "$operator_image" "$work/config.json" "$work/oci" "$work/base.tar" "$work/app.tar"
  mv "$work/oci.tar" "$work/image.tar"
}

# --- mlserver: MLServer 1.7.1's Dockerfile (WORKDIR /opt/mlserver, USER 1000, its ENV and CMD) on
# Debian's Python 3.11 in a venv at /opt/venv instead of conda's 3.10 in /opt/conda, with every
# version pinned to its poetry.lock (hack/images/mlserver/constraints.txt).
build_mlserver() {
  local work=$1 m="$here/mlserver"
  # Wheels come through this machine's pip (its index, proxy and CA settings), for CPython 3.11 on
  # glibc 2.36: the same tags as Debian bookworm's python3.11 in the root filesystem.
  python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), "hack/images needs python3.11 to fetch the wheels"'
  python3 -m pip download --quiet --only-binary=:all: --dest "$work/wheels" -r "$m/requirements.txt" -c "$m/constraints.txt"
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,libgomp1,ca-certificates,tar,gzip \
    --customize-hook="mkdir -p \"\$1/opt/build\" && cp -r '$work/wheels' '$m/constraints.txt' '$m/requirements.txt' \"\$1/opt/build/\"" \
    --customize-hook='chroot "$1" python3 -m venv /opt/venv' \
    --customize-hook='chroot "$1" env -i PATH=/usr/bin:/bin /opt/venv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check --no-index --find-links /opt/build/wheels -r /opt/build/requirements.txt -c /opt/build/constraints.txt' \
    --customize-hook='chroot "$1" useradd -u 1000 -s /bin/bash -d /opt/mlserver -M mlserver' \
    --customize-hook="mkdir -p \"\$1/opt/mlserver/hack\" \"\$1/mnt/models\" && cp '$m/activate-env.sh' \"\$1/opt/mlserver/hack/\"" \
    --customize-hook='chown -R 1000:0 "$1/opt/mlserver" && chmod -R 776 "$1/opt/mlserver"' \
    --customize-hook='rm -rf "$1"/opt/build "$1"/tmp/* "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/usr/share/doc "$1"/usr/share/man' \
    "$suite" "$work/rootfs.tar" "$mirror"
  pack docker.io/seldonio/mlserver:1.7.1 "$m/config.json" "$work/oci" "$work/rootfs.tar"
  mv "$work/oci.tar" "$work/image.tar"
}

# --- torchserve: TorchServe 0.12.0's Dockerfile (user model-server, uid 1000; WORKDIR
# /home/model-server; its ENV, entrypoint script, config.properties, ENTRYPOINT and CMD) on Debian 12
# with Python 3.11 and Debian's CPU torch 1.13.1 instead of Ubuntu 20.04, Python 3.9 and torch 2.4.0+cpu.
build_torchserve() {
  local work=$1 m="$here/torchserve"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$work/wheels" -r "$m/requirements.txt"
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,python3-torch,python3-torchvision,python3-torchaudio,openjdk-17-jre-headless,ca-certificates \
    --customize-hook="mkdir -p \"\$1/opt/build\" && cp -r '$work/wheels' '$m/requirements.txt' \"\$1/opt/build/\"" \
    --customize-hook='chroot "$1" python3 -m venv --system-site-packages /home/venv' \
    --customize-hook='chroot "$1" env -i PATH=/usr/bin:/bin /home/venv/bin/pip install --quiet --no-deps --no-cache-dir --disable-pip-version-check --no-index --find-links /opt/build/wheels -r /opt/build/requirements.txt && chroot "$1" /home/venv/bin/pip check' \
    --customize-hook='chroot "$1" useradd -m model-server && mkdir -p "$1/home/model-server/tmp" "$1/home/model-server/model-store" "$1/mnt/models"' \
    --customize-hook="cp '$m/dockerd-entrypoint.sh' \"\$1/usr/local/bin/\" && cp '$m/config.properties' \"\$1/home/model-server/\"" \
    --customize-hook='chown -R 1000 "$1/home/venv" "$1/home/model-server"' \
    --customize-hook='rm -rf "$1"/opt/build "$1"/tmp/* "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/usr/share/doc "$1"/usr/share/man' \
    "$suite" "$work/rootfs.tar" "$mirror"
  pack docker.io/pytorch/torchserve:0.12.0-cpu "$m/config.json" "$work/oci" "$work/rootfs.tar"
  mv "$work/oci.tar" "$work/image.tar"
}

# --- custom-server: a small V2 server in Python's standard library for the `custom` runtime.
build_custom_server() {
  local work=$1 c="$here/custom-server"
  mmdebstrap --quiet --variant=minbase --include=python3 \
    --customize-hook="mkdir -p \"\$1/srv\" && cp '$c/server.py' \"\$1/srv/server.py\"" \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/usr/share/doc "$1"/usr/share/man' \
    "$suite" "$work/rootfs.tar" "$mirror"
  echo '{"User":"1000:1000","WorkingDir":"/srv","Entrypoint":["python3","/srv/server.py"],"ExposedPorts":{"8080/tcp":{}}}' > "$work/config.json"
  pack modelship.io/custom-server:0.1.0 "$work/config.json" "$work/oci" "$work/rootfs.tar"
  mv "$work/oci.tar" "$work/image.tar"
}

# --- vllm: the name and entrypoint of vLLM 0.11.0's image (docker/Dockerfile: WORKDIR /vllm-workspace,
# root, VLLM_USAGE_SOURCE, ENTRYPOINT python3 -m vllm.entrypoints.openai.api_server), built for CPU as its
# docker/Dockerfile.cpu does (a venv at /opt/venv, `VLLM_TARGET_DEVICE=cpu setup.py bdist_wheel`, tcmalloc
# and Intel OpenMP preloaded), from the PyPI sdist with PyPI's torch 2.8.0 on Debian's Python 3.11. The
# compiler stays, as in Dockerfile.cpu's base: vLLM warms up on CPU through torch.compile, whose C++
# kernels need g++ and Python's headers at run time.
build_vllm() {
  local work=$1 m="$here/vllm"
  python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), "hack/images needs python3.11 to fetch the wheels"'
  # pip fetches the sdist by name and holds it to the sha256 PyPI publishes for it (--require-hashes).
  # Before it saves the file, pip prepares its metadata, and vLLM's setup.py imports torch and asks nvcc
  # for the CUDA version. For that step only, a stub torch and a stub nvcc stand in, so that the metadata
  # carries the plain version 0.11.0 the index lists; the real torch 2.8.0 is installed in the image and
  # builds the CPU extension from this same file.
  python3 -m venv "$work/meta"
  "$work/meta/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: -c "$m/constraints-build.txt" setuptools setuptools-scm packaging wheel Jinja2
  mkdir -p "$work/stub/torch/utils" "$work/stub/cuda/bin"
  printf '__version__ = "2.8.0"\nclass version:\n    cuda = "12.8"\n    hip = None\n' > "$work/stub/torch/__init__.py"
  : > "$work/stub/torch/utils/__init__.py"
  printf 'CUDA_HOME = "%s"\nROCM_HOME = None\n' "$work/stub/cuda" > "$work/stub/torch/utils/cpp_extension.py"
  printf '#!/bin/sh\necho "Cuda compilation tools, release 12.8, V12.8.93"\n' > "$work/stub/cuda/bin/nvcc"
  chmod +x "$work/stub/cuda/bin/nvcc"
  PYTHONPATH="$work/stub" "$work/meta/bin/pip" download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    --no-build-isolation --require-hashes -r "$m/sdist.txt" --dest "$work"
  rm -rf "$work/meta" "$work/stub"
  tar -xzf "$work/vllm-0.11.0.tar.gz" -C "$work"
  python3 -m pip download --quiet --only-binary=:all: --dest "$work/wheels" \
    -r "$work/vllm-0.11.0/requirements/common.txt" -r "$m/requirements-cpu.txt" -c "$m/constraints.txt"
  python3 -m pip download --quiet --only-binary=:all: --dest "$work/wheels" -c "$m/constraints-build.txt" cmake setuptools-scm wheel
  rm -f "$work/vllm-0.11.0.tar.gz"
  mmdebstrap --quiet --variant=minbase \
    --include=python3,python3-venv,python3-dev,g++,libnuma-dev,libtcmalloc-minimal4,ca-certificates \
    --customize-hook="mkdir -p \"\$1/opt/build\" && cp -r '$work/wheels' '$work/vllm-0.11.0' '$m/build-in-root.sh' '$m/requirements-cpu.txt' '$m/constraints.txt' '$m/constraints-build.txt' \"\$1/opt/build/\"" \
    --customize-hook='chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root /opt/build/build-in-root.sh' \
    --customize-hook='mkdir -p "$1/vllm-workspace" "$1/mnt/models"' \
    --customize-hook='rm -rf "$1"/opt/build "$1"/root/.cache "$1"/tmp/* "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/usr/share/doc "$1"/usr/share/man' \
    "$suite" "$work/rootfs.tar" "$mirror"
  rm -rf "$work/wheels" "$work/vllm-0.11.0"
  pack docker.io/vllm/vllm-openai:v0.11.0 "$m/config.json" "$work/oci" "$work/rootfs.tar"
  rm -f "$work/rootfs.tar"
  mv "$work/oci.tar" "$work/image.tar"
}

# --- tiny-llm: a model, not a server: a 2-layer Llama with random weights and a tokenizer trained here
# (hack/images/tiny-llm/make_model.py), as the only layer of an image that an oci:// model URI mounts.
build_tiny_llm() {
  local work=$1 m="$here/tiny-llm"
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: -r "$m/requirements.txt"
  "$work/venv/bin/python" "$m/make_model.py" "$work/rootfs"
  chmod -R a+rX,go-w "$work/rootfs"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/rootfs" -cf "$work/layer.tar" .
  echo '{"Labels":{"modelship.io/model":"tiny-llama"}}' > "$work/config.json"
  pack modelship.io/models/tiny-llama:1 "$work/config.json" "$work/oci" "$work/layer.tar"
  mv "$work/oci.tar" "$work/image.tar"
}

images=("$@")
[ ${#images[@]} -gt 0 ] || images=(pause operator mlserver torchserve custom-server vllm tiny-llm)
for image in "${images[@]}"; do
  case "$image" in
    pause) build pause "$(key_of "$here/oci.ts" "$root/hack/k8s/go.mod" <(recipe build_pause pack tar_dir k8s_module_dir))" ;;
    operator) build operator "$(printf '%s %s' "$(key_of "$here/oci.ts" "$root/package-lock.json" "$root/tsconfig.json" "$root/tsconfig.build.json" "$root/operator" "$root/crds" <(recipe build_operator distroless_base pack tar_dir))" "$operator_image" | sha256sum | cut -c1-16)" ;;
    mlserver) build mlserver "$(key_of "$here/oci.ts" "$here/mlserver" <(recipe build_mlserver pack))" ;;
    torchserve) build torchserve "$(key_of "$here/oci.ts" "$here/torchserve" <(recipe build_torchserve pack))" ;;
    custom-server) build custom-server "$(key_of "$here/oci.ts" "$here/custom-server" <(recipe build_custom_server pack))" ;;
    vllm) build vllm "$(key_of "$here/oci.ts" "$here/vllm" <(recipe build_vllm pack))" "$llm_links" ;;
    tiny-llm) build tiny-llm "$(key_of "$here/oci.ts" "$here/tiny-llm" <(recipe build_tiny_llm pack))" "$llm_links" ;;
    *) log "unknown image $image (pause operator mlserver torchserve custom-server vllm tiny-llm)"; exit 2 ;;
  esac
done
