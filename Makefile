# rune — see README.md. `make run` starts a local system; `make test` runs every test.

SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all build deps test lint fmt run bench bench-fleet clean

all: build

build: deps
	$(CARGO) build --release --bins

# Installs what the build and the tests need and the machine lacks: protoc (etcd-client
# compiles etcd's protobufs) and etcd itself (the tests start real etcd servers).
deps:
	@missing=""; \
	command -v protoc >/dev/null || missing="$$missing protobuf-compiler"; \
	command -v etcd >/dev/null || missing="$$missing etcd-server"; \
	command -v etcdctl >/dev/null || missing="$$missing etcd-client"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "rune needs:$$missing — install them (Debian/Ubuntu: sudo apt-get install$$missing) and run make again"; \
	    exit 1; \
	  fi; \
	fi

test: deps
	$(CARGO) test --locked --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# etcd + controller + agent on this machine, the example services, a demo scale.
run: deps
	@scripts/run-local.sh

# Starts its own etcd, controller and agent and measures scale latency, `rune scale N`
# wall time, etcd requests per instance, CPU and memory; writes docs/benchmarks.md.
bench: deps
	$(CARGO) build --release --bins --examples
	$(CARGO) bench --bench scale

# The control plane at fleet size: hollow nodes (rune-agent --hollow), one etcd, a
# leader and a standby controller; writes the fleet section of docs/benchmarks.md.
# RUNE_FLEET_NODES / RUNE_FLEET_SERVICES / RUNE_FLEET_SCALE size it (default 1000
# nodes, 10000 services x 10).
bench-fleet: deps
	$(CARGO) build --release --bins
	$(CARGO) bench --bench fleet

clean:
	$(CARGO) clean
