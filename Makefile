# The few commands a person types. Everything installs what it needs first.
SHELL := /bin/bash
UV_VERSION := 0.13.9
VENV := .venv
TOOLS := .tools
UV := $(shell command -v uv 2>/dev/null || echo $(TOOLS)/bin/uv)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install system-deps run test lint fmt services-up services-down clean bench slo loadtest \
	image image-test chaos cluster cluster-down cluster-test

install: system-deps $(VENV)/.synced

system-deps:
	@bash scripts/install-system-deps.sh

$(TOOLS)/bin/uv:
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --quiet
	@touch $@

## run: the whole platform locally (PostgreSQL, Redis, API, worker, beat) until Ctrl-C
# BACKUPS=1 also archives WAL to a local pgBackRest repository, to practise restores.
run: install
	amrutam dev run $(if $(BACKUPS),--backups)

## test: the whole test suite against real PostgreSQL and Redis it starts itself
# TEST_WORKERS processes, each with its own PostgreSQL, Redis and servers (0: one process).
TEST_WORKERS ?= 2
test: install
	pytest -n $(TEST_WORKERS) --dist loadgroup

## lint: ruff, mypy and the import contract
lint: install
	ruff check .
	ruff format --check .
	mypy
	lint-imports

fmt: install
	ruff format .
	ruff check --fix .

services-up: install
	amrutam dev up

services-down: install
	amrutam dev down

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache

## bench: hot-path figures (search, profile, slots, booking) against a local API process
bench: install
	@command -v wrk >/dev/null || apt-get install -y -qq wrk
	python -m loadtests.bench

## slo: the short load run with the p95 gate that CI runs after the tests. SLO_BASE_URL
## loads a running platform, seeded with the profile's data, instead of a local one (the
## cluster's ingress, with SLO_PROFILE=cluster: tests/cluster/test_slo_autoscaling.py)
SLO_PROFILE ?= ci
slo: install
	python -m loadtests.run --profile $(SLO_PROFILE) $(if $(SLO_BASE_URL),--base-url $(SLO_BASE_URL))

## loadtest: a longer run on the large data set (10k doctors, 100k patients, 5M audit rows)
loadtest: install
	python -m loadtests.run --profile full

## chaos: 10 minutes of load through API, Redis and PostgreSQL faults (a failover too);
## figures in docs/availability/ (docs/availability.md)
chaos: install
	python -m loadtests.chaos --out docs/availability

## image: the application and PostgreSQL images, with podman or docker (podman is
## installed from Debian when neither is); offline, on local stand-in base images
# EXTRA_CA_CERTS: PEM files that HTTPS inside the build must trust (a TLS-intercepting
# proxy); by default the CAs this host added to its own trust store.
EXTRA_CA_CERTS ?= $(wildcard /usr/local/share/ca-certificates/*.crt)
image:
	EXTRA_CA_CERTS="$(EXTRA_CA_CERTS)" bash images/build.sh

## image-test: builds the images, boots them and proves them (tests/images), compose too
image-test: install image
	bash images/test.sh

## cluster: a single-node Kubernetes on this machine (root), built from its Go modules at
## the versions of hack/cluster/versions.env and cached by version outside the clone;
## prints the kubeconfig (hack/cluster/README.md)
cluster:
	@bash hack/cluster/up.sh

cluster-down:
	@bash hack/cluster/down.sh

## cluster-test: the images imported into that cluster, the chart installed with the real
## Helm, and the tests marked `cluster` (tests/cluster) against it. The cluster stays up.
cluster-test: install image
	bash hack/cluster/up.sh >/dev/null
	bash hack/cluster/load-images.sh $${APP_IMAGE:-localhost/amrutam:dev} $${POSTGRES_IMAGE:-localhost/amrutam-postgresql:dev}
	pytest -m cluster tests/cluster
