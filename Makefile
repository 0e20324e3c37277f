# FLEET-Q: one entry point for developers and CI. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
NODE_BIN := node_modules/.bin
PROTOC = $(PY) -m grpc_tools.protoc -I proto -I $(GOOGLEAPIS) \
	--plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc
GOOGLEAPIS = $(shell $(PY) -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))')

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

$(NODE_BIN)/buf: package.json
	npm install --no-audit --no-fund --silent
	touch $@

# promtool checks the /metrics exposition in a test. Debian's prometheus package ships it;
# only that binary is unpacked into the venv, so no service is installed or started.
$(BIN)/promtool: | $(VENV)/.installed
	if command -v promtool >/dev/null; then ln -sf "$$(command -v promtool)" $@; else \
		tmp=$$(mktemp -d) && cd $$tmp && \
		{ apt-get download prometheus || { apt-get update -qq && apt-get download prometheus; }; } && \
		dpkg-deb --fsys-tarfile prometheus_*.deb | tar -xO ./usr/bin/promtool > $(CURDIR)/$@.tmp && \
		chmod +x $(CURDIR)/$@.tmp && mv $(CURDIR)/$@.tmp $(CURDIR)/$@ && rm -rf $$tmp; fi

# PgBouncer for the topology tests (tests/topologies start it on free ports in front of the
# test database): Debian's package. Its own service is not used (and not started by policy).
/usr/sbin/pgbouncer:
	apt-get install -y -q pgbouncer || { apt-get update -qq && apt-get install -y -q pgbouncer; }

# Debian's Chromium for the dashboard's browser tests (tests/browser): Playwright drives it
# through executable_path, so nothing downloads a browser of its own.
/usr/bin/chromium:
	apt-get install -y -q chromium || { apt-get update -qq && apt-get install -y -q chromium; }

# grpc-gateway v1 and what builds it, offline: Debian's Go toolchain, protoc, the generators
# and the Go libraries in GOPATH form (/usr/share/gocode). Only for `make gateway-test`.
GATEWAY_PACKAGES := golang-go protobuf-compiler golang-grpc-gateway \
	golang-github-grpc-ecosystem-grpc-gateway-dev golang-goprotobuf-dev
/usr/bin/protoc-gen-grpc-gateway:
	apt-get install -y -q $(GATEWAY_PACKAGES) || \
		{ apt-get update -qq && apt-get install -y -q $(GATEWAY_PACKAGES); }

.PHONY: install
install: $(VENV)/.installed $(NODE_BIN)/buf $(BIN)/promtool /usr/sbin/pgbouncer /usr/bin/chromium ## Create .venv and install everything (pip, npm for buf, promtool, pgbouncer, chromium)

.PHONY: proto
proto: $(VENV)/.installed ## Regenerate generated/ from proto/
	rm -rf generated && mkdir -p generated
	$(PROTOC) --python_out=generated --grpc_python_out=generated \
		--mypy_out=generated --mypy_grpc_out=generated fleetq/v1/fleetq.proto
	touch generated/fleetq/__init__.py generated/fleetq/v1/__init__.py

.PHONY: proto-check
proto-check: install ## buf lint, and fail when generated/ is stale
	@# buf resolves google/api imports from a gitignored module staged from the pip package
	rm -rf build/googleapis && mkdir -p build/googleapis/google/api
	cp $(GOOGLEAPIS)/google/api/*.proto build/googleapis/google/api/
	$(NODE_BIN)/buf lint
	@tmp=$$(mktemp -d) && \
	$(PROTOC) --python_out=$$tmp --grpc_python_out=$$tmp \
		--mypy_out=$$tmp --mypy_grpc_out=$$tmp fleetq/v1/fleetq.proto && \
	touch $$tmp/fleetq/__init__.py $$tmp/fleetq/v1/__init__.py && \
	if ! diff -r -x __pycache__ $$tmp generated >/dev/null; then \
		echo "generated/ is stale: run 'make proto' and commit the result"; rm -rf $$tmp; exit 1; fi; \
	rm -rf $$tmp; echo "generated/ is up to date"

.PHONY: lint
lint: install ## ruff (lint + format check), mypy and the import contracts (.importlinter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

.PHONY: fmt
fmt: install ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

.PHONY: test
test: lint proto-check ## Install everything, then lint, proto checks and the whole test suite
	$(BIN)/pytest -q -n 3 --dist loadfile -m "not fleet and not grpc_gateway"

.PHONY: test-failover
test-failover: install ## Only the primary-failover test (also in `test`), with its timings
	$(BIN)/pytest -q -rP -m failover

.PHONY: test-fleet
test-fleet: install ## The fleet-sized tests (30 pods behind PgBouncer), apart for their weight
	$(BIN)/pytest -q -m fleet

.PHONY: gateway-test
gateway-test: $(VENV)/.installed /usr/bin/protoc-gen-grpc-gateway ## Build deploy/grpc-gateway (Debian's packages, offline) and replay the REST contract through it
	$(BIN)/pytest -q -m grpc_gateway

# Only Python and make: buf (npm) and promtool serve `make test`, not a pod.
.PHONY: run
run: $(VENV)/.installed ## Start one pod: embedded PostgreSQL, REST on :8000, gRPC on :50051, demo handlers
	FLEETQ_LOG_FORMAT=$${FLEETQ_LOG_FORMAT:-console} \
		FLEETQ_DEMO_HANDLERS=$${FLEETQ_DEMO_HANDLERS:-true} $(BIN)/fleetq serve

# As root: installs docker.io and mmdebstrap when missing, runs a private dockerd and removes
# it, its container and its database at the end (tests/image/image_test.sh says what it checks).
.PHONY: image-test
image-test: ## Build the Docker image and run it against the local PostgreSQL (needs root)
	bash tests/image/image_test.sh

SOAK_DURATION ?= 600
SOAK_RATE ?= 200

.PHONY: soak
soak: $(VENV)/.installed ## Soak run, not in `test`: 2 pods at SOAK_RATE/s for SOAK_DURATION s (benchmarks/results)
	$(PY) -m benchmarks.soak --duration $(SOAK_DURATION) --rate $(SOAK_RATE)

# The load generators the benchmark prefers: C clients, so the pod saturates before they
# do. Without them it falls back to Python clients, and its report says which ran.
.PHONY: bench-tools
bench-tools:
	@command -v wrk >/dev/null && command -v h2load >/dev/null || \
		{ apt-get install -y -q wrk nghttp2-client || \
		  { apt-get update -qq && apt-get install -y -q wrk nghttp2-client; }; } || \
		echo "wrk/h2load not installed: the benchmark falls back to Python clients"

.PHONY: bench
bench: $(VENV)/.installed bench-tools ## Benchmarks + report in benchmarks/results/ (BENCH_ARGS=--quick: smoke run)
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# PgQueuer from PyPI in its own virtualenv: FLEET-Q's .venv never gets its dependencies.
PEERS_VENV ?= .venv-peers
PGQUEUER_VERSION ?= 1.6.0

$(PEERS_VENV)/.installed-pgqueuer-$(PGQUEUER_VERSION):
	rm -rf $(PEERS_VENV) && python3 -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q 'pgqueuer[asyncpg]==$(PGQUEUER_VERSION)'
	touch $@

.PHONY: bench-peers
bench-peers: $(VENV)/.installed $(PEERS_VENV)/.installed-pgqueuer-$(PGQUEUER_VERSION) ## FLEET-Q vs PgQueuer on one PostgreSQL, ratio table in benchmarks/results/ (PEERS_ARGS=--quick)
	$(PY) -m benchmarks.peers.run --peers-python $(PEERS_VENV)/bin/python $(PEERS_ARGS)

.PHONY: clean
clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) $(PEERS_VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
