# Modelship. `make run` and `make test` set up everything they need on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Node 24 comes from the npm `node` package (a devDependency): every target runs on it.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

NODE_DEPS := node_modules/.package-lock.json
CLUSTER_DIR ?= $(CURDIR)/.cluster

.PHONY: help
help: ## show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(NODE_DEPS): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

.PHONY: deps
deps: $(NODE_DEPS) ## install npm dependencies (Node 24 included) and system packages
	@hack/system-deps.sh

.PHONY: bins
bins: ## build the control plane (apiserver, etcd, kwok, ...) from Go modules; cached
	@hack/build-bins.sh

.PHONY: build
build: deps ## compile TypeScript to dist/, and put the kubectl plugin in .bin/
	npm run --silent build
	@# kubectl finds plugins on PATH; this one runs on the project's Node 24 whatever PATH says about node.
	@mkdir -p .bin && printf '#!/bin/sh\nexec "%s/node_modules/.bin/node" "%s/dist/operator/cli/kubectl-modelship.js" "$$@"\n' "$(CURDIR)" "$(CURDIR)" > .bin/kubectl-modelship && chmod +x .bin/kubectl-modelship

.PHONY: generate
generate: deps ## regenerate the TypeScript types, the API reference and the chart's CRD copy from crds/
	node --import tsx hack/generate-types.ts
	node --import tsx hack/generate-api-docs.ts
	cp crds/modeldeployments.modelship.io.yaml charts/modelship/crds/

.PHONY: lint
lint: deps
	npm run --silent lint

.PHONY: typecheck
typecheck: deps
	npm run --silent typecheck

.PHONY: images
images: deps ## build the real node's images without a registry (pause, operator, MLServer, TorchServe, custom server, vLLM for CPU, a tiny Llama); cached
	@hack/images/build.sh

.PHONY: test
test: deps bins ## lint, typecheck, unit, integration (KWOK) and end-to-end tests (a real node, as root)
	@hack/test.sh

N ?= 100
SCENARIO ?= all
PEER ?=

.PHONY: bench
bench: build bins ## benchmarks on local control planes: SCENARIO=all|floor|create|rollout|steady|churn N=100, or PEER=argo-rollouts (bench/README.md)
	@$(if $(PEER),hack/build-bins.sh $(PEER) &&) node --import tsx bench/bench.ts --scenario $(SCENARIO) --n $(N) $(if $(PEER),--peer $(PEER))

REAL_NODE ?= off
RUN_REAL_NODE ?= auto

.PHONY: cluster
cluster: deps bins ## start a local control plane (prints the KUBECONFIG export); REAL_NODE=auto adds a real node
	@node --import tsx test/cluster/supervisor.ts up --detach --dir $(CLUSTER_DIR) --real-node $(REAL_NODE)

.PHONY: cluster-down
cluster-down: ## stop the operator started by make run, and the local control plane
	@CLUSTER_DIR=$(CLUSTER_DIR) hack/run.sh stop
	@node --import tsx test/cluster/supervisor.ts down --dir $(CLUSTER_DIR)

.PHONY: run
run: build bins ## start the cluster (a real node where the machine allows), the operator, and the quickstart
	@CLUSTER_DIR=$(CLUSTER_DIR) REAL_NODE=$(RUN_REAL_NODE) hack/run.sh

IMAGE ?= ghcr.io/modelship/modelship:0.1.0
CONTAINER_ENGINE ?= $(shell command -v docker || command -v podman)

.PHONY: image
image: deps ## build the operator image: with docker or podman if present, else an OCI layout in dist/oci (no daemon)
	@if [ -n "$(CONTAINER_ENGINE)" ]; then $(CONTAINER_ENGINE) build -t $(IMAGE) .; else \
	  MODELSHIP_OPERATOR_IMAGE=$(IMAGE) MODELSHIP_IMAGE_CACHE=$(CURDIR)/dist/image-cache MODELSHIP_IMAGE_LINKS=$(CURDIR)/dist/image-cache \
	    hack/images/build.sh operator && rm -rf dist/oci && mkdir -p dist/oci && tar -xf dist/image-cache/operator.tar -C dist/oci && \
	  echo "$(IMAGE) is an OCI layout in dist/oci; push it with: skopeo copy oci:dist/oci docker://$(IMAGE)"; fi
