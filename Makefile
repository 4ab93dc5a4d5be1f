# One Makefile for the project. Every target sets up what it needs from nothing.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
export TSP_CACHE ?= $(HOME)/.cache/tspipe

.PHONY: all images venv kafka-jars k8s-bins scdf-jars spring-apps node-images monitoring-crds promtool prometheus helm infra test unit demo bench bench-soak clean crd chart pod-schemas deployer-model

all: venv

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt router/requirements.txt router/pyproject.toml operator/requirements.txt operator/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt -r router/requirements.txt -r operator/requirements.txt
	$(PY) -m pip install --quiet --no-deps -e router -e operator
	@touch $@

kafka-jars:
	bash hack/kafka-jars.sh

k8s-bins: venv
	bash hack/build-k8s.sh

scdf-jars:
	bash hack/scdf-jars.sh

spring-apps:
	bash hack/spring-apps.sh

# The Prometheus operator's CRDs (PodMonitor, ServiceMonitor, PrometheusRule) from its Go
# module: tests/monitoring validates manifests/monitoring against them (seconds, 4 MB).
monitoring-crds:
	bash hack/monitoring-tools.sh crds

# Prometheus' promtool from its Go module, for tests/monitoring/test_promtool.py
# (`promtool check rules`, `promtool test rules`): built once and cached, about 6 minutes
# cold on 2 cores (without the service-discovery plugins, which rule checks never use).
promtool:
	bash hack/monitoring-tools.sh promtool

# The Prometheus server of the same module, with only the Kubernetes service discovery,
# for tests/monitoring/test_prometheus_kube.py (discovers and scrapes the pipeline through
# the PodMonitors, evaluates the rules, answers the dashboard's queries). Built once, cached.
prometheus:
	bash hack/monitoring-tools.sh prometheus

# The real node's images (router, operator, Spring apps, pause) built with buildah on a
# locally made Debian base; installs the node's Debian packages first. A machine that
# cannot have them (not root, no apt-get) gets a note, and the node tests skip saying so.
node-images: spring-apps
	@rc=0; bash hack/node-packages.sh || rc=$$?; \
	if [ $$rc -eq 3 ]; then echo "node-images: no real node on this machine (see above); node tests will skip"; \
	elif [ $$rc -ne 0 ]; then exit $$rc; else bash hack/node-images.sh; fi

# The two images for a real cluster, with Docker or Podman (the first on PATH; choose with
# CONTAINER_TOOL=podman), tagged as manifests/, the sample and the chart name them
# (tests/install/test_images_target.py checks). The tests build theirs with buildah
# (node-images). Push them where your nodes pull from, or load them into the nodes.
CONTAINER_TOOL ?= $(firstword $(foreach t,docker podman,$(if $(shell command -v $(t) 2>/dev/null),$(t))))
OPERATOR_IMAGE ?= ghcr.io/tspipe/operator:0.1.0
ROUTER_IMAGE   ?= ghcr.io/tspipe/router:0.1.0

images:
	@test -n "$(CONTAINER_TOOL)" || { echo "make images: neither docker nor podman on PATH (set CONTAINER_TOOL)"; exit 2; }
	$(CONTAINER_TOOL) build -f Dockerfile.operator -t $(OPERATOR_IMAGE) .
	$(CONTAINER_TOOL) build -f Dockerfile.router -t $(ROUTER_IMAGE) .

# Helm's command line from its Go module (helm.sh/helm/v4, pinned in hack/helm/versions), for
# the chart tests in tests/install/test_chart_*.py: built once and cached (8 minutes cold on a
# shared 2-core machine with one package compiled at a time; a 67 MB static binary).
helm:
	bash hack/helm.sh

infra: venv kafka-jars k8s-bins

# Everything: venv, Kafka jars, control-plane binaries, SCDF and Spring app jars, then all tests.
test: setup
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/pytest $(PYTEST_ARGS)

# What the tests need, in two chains side by side: the Go builds, which keep every core busy,
# and the downloads and image builds, which mostly wait on the network and the disk (Maven,
# apt, mmdebstrap, buildah's copies). Each chain runs its steps one at a time, in order: one
# Maven on ~/.m2 at a time, promtool before prometheus (which reuses its compiled packages).
# Two plain makes in the background of one shell, not make -j: under make -j (4.3) the node
# images' mmdebstrap left make with "wait: No child processes".
.PHONY: setup setup-go setup-fetch
setup:
	@$(MAKE) setup-fetch & fetch=$$!; rc=0; $(MAKE) setup-go || rc=$$?; wait $$fetch || rc=$$?; exit $$rc
setup-go: venv k8s-bins monitoring-crds promtool prometheus helm
setup-fetch: kafka-jars scdf-jars spring-apps node-images node-image-baseline

# The upgrade test's earlier operator image (tests/node/test_node_upgrade.py): the revision
# hack/upgrade/baseline.json pins, built by hack/node-image-at.sh here, beside the Go builds,
# rather than inside the test, which finds it cached. No real node on this machine, or a clone
# without that revision (shallow): nothing to build, and the test skips saying why.
.PHONY: node-image-baseline
node-image-baseline: node-images
	@rc=0; bash hack/node-packages.sh || rc=$$?; \
	if [ $$rc -eq 3 ]; then echo "node-image-baseline: no real node on this machine"; \
	elif [ $$rc -ne 0 ]; then exit $$rc; else \
	  rev=$$($(PYTHON) -c 'import json; print(json.load(open("hack/upgrade/baseline.json"))["revision"])'); \
	  rc=0; bash hack/node-image-at.sh "$$rev" >/dev/null || rc=$$?; \
	  if [ $$rc -eq 4 ]; then echo "node-image-baseline: no $$rev in this clone; the upgrade test will skip"; \
	  elif [ $$rc -ne 0 ]; then exit $$rc; fi; \
	fi

# Pure-logic tests only; no infrastructure.
unit: venv
	$(VENV)/bin/pytest -m "not kafka and not kube and not scdf" $(PYTEST_ARGS)

demo: infra spring-apps node-images
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH PYTHONPATH=$(CURDIR)/hack $(PY) -m localinfra.demo $(DEMO_ARGS)

bench: infra
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH PYTHONPATH=$(CURDIR)/hack $(PY) -m bench $(BENCH)

# The operator's soak (bench/operator_soak.py): 1,000 pipelines for an hour, 70+ minutes in
# all, so not part of a plain `make bench`.
bench-soak: infra
	$(MAKE) bench BENCH=bench.operator_soak

clean:
	rm -rf $(VENV)

# The CRD, generated from the operator's declarations (a unit test checks it is current).
crd: venv
	$(PY) -m tspipe.crd > crds/timestamppipelines.tspipe.io.yaml
	$(MAKE) chart

# The Helm chart's copies of manifests/ and crds/ (charts/tspipe/files/manifests/, its
# crds/): its templates read the install's objects from there. A unit test checks they are current.
chart: venv
	$(PY) hack/chartsync.py

# The Kubernetes shapes podTemplate embeds, read from a local control plane's OpenAPI
# (operator/tspipe/data/podtemplate-schemas.json; a kube test checks it is current), then the CRD.
pod-schemas: venv k8s-bins
	PYTHONPATH=$(CURDIR)/hack $(PY) -m podschemas
	$(MAKE) crd

# The fields SCDF's Kubernetes deployer can carry in volumes, mounts and affinity: the
# fabric8 model classes in the harness's Skipper jar (operator/tspipe/data/scdf-deployer-model.json).
deployer-model: scdf-jars
	bash hack/deployer-model.sh

# Guard rails, in seconds: ruff (lint and format), mypy (strict on the pure modules),
# the import layers (.importlinter) and the CRD's compatibility with the one at a pinned
# earlier revision (hack/crdcompat.py). CI runs it before the tests.
.PHONY: lint
lint: venv
	$(VENV)/bin/ruff check operator router tests hack bench
	$(VENV)/bin/ruff format --check operator router tests hack bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) hack/crdcompat.py

# The reset's plan, shared by the operator and the router image's `tsp-router reset-offsets`
# (two distributions that import nothing from each other): the router's copy of the operator's
# file (operator/tspipe/offsetplan.py says why; a unit test checks the copy is current).
.PHONY: offsetplan
offsetplan:
	cp operator/tspipe/offsetplan.py router/tsrouter/offsetplan.py
