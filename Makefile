# p4tas entry points. `make run` starts the stack, `make test` runs every test (README.md).
# Tools are found through P4C / SIMPLE_SWITCH_GRPC, then PATH, then /opt/p4/bin.
# TARGET=bmv2|soft picks the fast-path target of run, ptf, pytest and the benches; unset, bmv2
# when simple_switch_grpc is found, else soft (bmv2_env/targets.py). `make test` runs every
# available target regardless.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
P4C ?= $(shell command -v p4c 2>/dev/null || echo /opt/p4/bin/p4c)
export P4C
# p4c's DPDK backend, for the PNA program of the dpdk target (built with the rest of p4c; the
# `p4c` driver knows only dpdk-psa).
P4C_DPDK ?= $(shell command -v p4c-dpdk 2>/dev/null || echo /opt/p4/bin/p4c-dpdk)
export P4C_DPDK

P4_MAIN := p4src/v1model/p4tas.p4
P4_BUILD := p4src/build
P4_PNA_MAIN := p4src/pna/p4tas.p4
# The 1M-flow bmv2/softnic build (p4src/shared/constants.p4: MAX_FLOWS); tests use the default.
P4_SCALE_BUILD := $(P4_BUILD)/1m
P4_SCALE_FLOWS := 1048576
P4_PNA_BUILD := $(P4_BUILD)/pna
P4_SOURCES := $(shell find p4src -name '*.p4' -not -path '$(P4_BUILD)/*')
# One line per test stage; tests/support/summary.py adds them up at the end of `make test`.
P4TAS_REPORT ?= $(CURDIR)/.venv/test-report.txt
export P4TAS_REPORT
TARGET ?=
export TARGET
# The PTF run gets its own veths and switch, so it never disturbs a `make run` environment.
# P4Runtime is on a UNIX socket in each prefix's state dir (only root can connect), so distinct
# prefixes never collide.
PTF_PREFIX ?= p4ptf
# `make test` runs the PTF and end-to-end stages once per target, each on veths of its own (bmv2
# keeps the names above and tests/support/stack.py's defaults), so no stage can disturb another.
# Which targets: `python -m bmv2_env targets --tested` (bmv2 when simple_switch_grpc is found,
# soft, and dpdk when DPDK is installed).
PTF_PREFIX_bmv2 ?= $(PTF_PREFIX)
PTF_PREFIX_soft ?= p4ptfs
E2E_PREFIX_bmv2 ?= p4e2e
E2E_PREFIX_soft ?= p4e2es
PTF_PREFIX_dpdk ?= p4ptfd
E2E_PREFIX_dpdk ?= p4e2ed
KNOWN_TARGETS := bmv2 soft dpdk

.PHONY: setup p4 p4-check ptf test pytest pytest-unit run clean-env status system-deps targets fuzz \
	dpdk-target \
	FORCE

setup: system-deps $(VENV)/.installed dpdk-target

# The dpdk target's runner and pipeline library, built (once, cached in the venv) from Debian's
# DPDK and the committed spec; without DPDK it says why and the dpdk target is unavailable.
dpdk-target: $(VENV)/.installed
	@$(PY) -m dpdk_target.toolchain || true

# Every system tool the project runs (ethtool, nft, ip, ...), from Debian's packages when it is
# missing; the list is bmv2_env/system_packages.txt. Without root or apt-get it says what to
# install, and the tests that need a missing tool skip with that reason.
system-deps:
	@$(PYTHON) bmv2_env/system_deps.py install || true

# PYTHONWARNINGS: setuptools' notes on editable installs are for packagers, not for users.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --upgrade pip
	@PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --editable '.[test]'
	@touch $@

# Compile the fast path into p4src/build/ (committed, so the Python side needs no compiler):
# the v1model program for bmv2 and softnic, and the PNA program for the dpdk target
# (p4src/build/pna/: the DPDK SWX spec, its P4Info and context), and the v1model program for
# 1M flows (p4src/build/1m/, selected with the runtime's --p4info/--device-config).
p4:
	@test -x "$(P4C)" || { echo "p4c not found (set P4C, put p4c on PATH, or install to /opt/p4/bin; see bmv2_env/README.md)"; exit 2; }
	@test -x "$(P4C_DPDK)" || { echo "p4c-dpdk not found (set P4C_DPDK, put p4c-dpdk on PATH, or install to /opt/p4/bin; p4c builds it with its DPDK backend)"; exit 2; }
	bash p4src/compile.sh "$(P4C)" $(P4_MAIN) $(P4_BUILD)
	bash p4src/compile.sh --max-flows $(P4_SCALE_FLOWS) "$(P4C)" $(P4_MAIN) $(P4_SCALE_BUILD)
	bash p4src/compile.sh --pna "$(P4C_DPDK)" $(P4_PNA_MAIN) $(P4_PNA_BUILD)

# Recompile a copy of p4src/ in a temporary folder (same relative paths, so the same output)
# and fail if the committed artifacts differ: the v1model program with p4c, the PNA program
# with p4c-dpdk (each skipped, with the reason, when its compiler is missing).
p4-check:
	@if [ ! -x "$(P4C)" ]; then \
	  echo "p4-check: SKIPPED: p4c not found (set P4C, put p4c on PATH, or install to /opt/p4/bin)"; \
	  echo "p4-check: 0 passed, 0 failed, 1 skipped (p4c not found)" >> $(P4TAS_REPORT); \
	else \
	  tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  cp -r p4src "$$tmp/" && rm -rf "$$tmp/$(P4_BUILD)" && \
	  bash "$$tmp/p4src/compile.sh" "$(P4C)" $(P4_MAIN) $(P4_BUILD) >/dev/null && \
	  bash "$$tmp/p4src/compile.sh" --max-flows $(P4_SCALE_FLOWS) "$(P4C)" $(P4_MAIN) \
	    $(P4_SCALE_BUILD) >/dev/null 2>&1 && \
	  if diff -q "$$tmp/$(P4_BUILD)/p4tas.json" $(P4_BUILD)/p4tas.json && \
	     diff -q "$$tmp/$(P4_BUILD)/p4tas.p4info.txtpb" $(P4_BUILD)/p4tas.p4info.txtpb && \
	     diff -r -q "$$tmp/$(P4_SCALE_BUILD)" $(P4_SCALE_BUILD); then \
	    echo "p4-check: committed artifacts match the source"; \
	    echo "p4-check: 1 passed, 0 failed, 0 skipped" >> $(P4TAS_REPORT); \
	  else \
	    echo "p4-check: FAILED: p4src/build is stale; run 'make p4' and commit p4src/build"; \
	    echo "p4-check: 0 passed, 1 failed, 0 skipped" >> $(P4TAS_REPORT); exit 1; \
	  fi; \
	fi
	@if [ ! -x "$(P4C_DPDK)" ]; then \
	  echo "p4-check (pna): SKIPPED: p4c-dpdk not found (set P4C_DPDK, put p4c-dpdk on PATH, or install to /opt/p4/bin)"; \
	  echo "p4-check (pna): 0 passed, 0 failed, 1 skipped (p4c-dpdk not found)" >> $(P4TAS_REPORT); \
	else \
	  tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  cp -r p4src "$$tmp/" && rm -rf "$$tmp/$(P4_PNA_BUILD)" && \
	  bash "$$tmp/p4src/compile.sh" --pna "$(P4C_DPDK)" $(P4_PNA_MAIN) $(P4_PNA_BUILD) >/dev/null && \
	  if diff -r -q "$$tmp/$(P4_PNA_BUILD)" $(P4_PNA_BUILD); then \
	    echo "p4-check (pna): committed artifacts match the source"; \
	    echo "p4-check (pna): 1 passed, 0 failed, 0 skipped" >> $(P4TAS_REPORT); \
	  else \
	    echo "p4-check (pna): FAILED: p4src/build/pna is stale; run 'make p4' and commit p4src/build"; \
	    echo "p4-check (pna): 0 passed, 1 failed, 0 skipped" >> $(P4TAS_REPORT); exit 1; \
	  fi; \
	fi

# Every pytest test, the switch ones on the selected target (TARGET).
pytest: setup
	$(PY) -m pytest tests

# The tests that need no switch (report line `pytest (unit)`).
pytest-unit: setup
	P4TAS_PYTEST_STAGE=unit $(PY) -m pytest -m "not target" tests/unit tests/contract tests/env

# The tests that run a switch (tests/e2e/ and the real-switch tests of tests/env/: the `target`
# marker) on one target: make pytest-e2e-soft.
pytest-e2e-%: setup FORCE
	$(if $(filter $*,$(KNOWN_TARGETS)),,$(error unknown target '$*': use one of $(KNOWN_TARGETS)))
	TARGET=$* P4TAS_PYTEST_STAGE=e2e P4TAS_E2E_PREFIX=$(E2E_PREFIX_$*) \
	  $(PY) -m pytest -m target tests/e2e tests/env

# Veths + the switch of the selected target (TARGET) + pipeline, the PTF suite, and teardown even
# on failure or Ctrl-C.
ptf: setup
	$(PY) -m bmv2_env --prefix $(PTF_PREFIX) ptf

# The PTF suite on one target, on that target's veths and port: make ptf-soft.
ptf-%: setup FORCE
	$(if $(filter $*,$(KNOWN_TARGETS)),,$(error unknown target '$*': use one of $(KNOWN_TARGETS)))
	TARGET=$* $(PY) -m bmv2_env --prefix $(PTF_PREFIX_$*) ptf

# The long fuzzing run (the unit stage runs 50,000 packets): softnic's pipeline, the runtime's
# PacketIn handling and its control server, in-process (tests/support/fuzzing.py).
FUZZ_PACKETS ?= 1000000
fuzz: setup
	$(PY) -m tests.support.fuzzing --packets $(FUZZ_PACKETS)

# Which targets there are and which one TARGET selects.
targets: setup
	$(PY) -m bmv2_env targets

# The unit tests once, p4-check, then per available target (bmv2 when it is found, soft, dpdk)
# the end-to-end tests and the PTF suite; every stage appends its line to the report.
test: setup
	@mkdir -p $(dir $(P4TAS_REPORT)) && : > $(P4TAS_REPORT)
	@status=0; \
	targets=$$($(PY) -m bmv2_env targets --tested) || { targets=soft; status=1; }; \
	echo "make test: targets: $$targets"; \
	$(MAKE) --no-print-directory pytest-unit || status=1; \
	$(MAKE) --no-print-directory p4-check || status=1; \
	for t in $$targets; do \
	  $(MAKE) --no-print-directory pytest-e2e-$$t || status=1; \
	  $(MAKE) --no-print-directory ptf-$$t || status=1; \
	done; \
	$(PY) tests/support/summary.py $(P4TAS_REPORT) $$targets || status=1; \
	exit $$status

FORCE:

# The whole stack in the foreground (the TARGET's switch, Linux peers, runtime,
# examples/echo_server.py):
# prints what runs, how to talk to it and a READY line; Ctrl-C tears it all down.
run: setup
	$(PY) -m bmv2_env run

status: setup
	$(PY) -m bmv2_env status

clean-env:
	@if [ -x $(PY) ]; then $(PY) -m bmv2_env down; else echo "nothing to clean: no .venv"; fi

# Connection setups+teardowns per second, p4tas (switch of TARGET + runtime) against
# Linux-to-Linux.
# BENCH_ARGS="--n 1000 --concurrency 8" changes the count; see bench/bench_conn.py --help.
# New connections and a transfer's goodput under a SYN flood, p4tas next to Linux with
# syncookies, per TARGET; BENCH_ARGS="--rate 5000 --repeat 5"
# changes the flood and the transfers; see bench/bench_flood.py --help.
.PHONY: bench-flood
bench-flood: setup
	$(PY) bench/bench_flood.py $(BENCH_ARGS)

.PHONY: bench-conn
bench-conn: setup
	$(PY) bench/bench_conn.py $(BENCH_ARGS)

# Bulk goodput, RPC rate/latency, bmv2's forwarding ceiling and host_lib ring throughput, p4tas
# against Linux, in one run (< 3 min). BENCH_ARGS="--profile /tmp/prof" adds py-spy hot spots;
# see bench/bench_transfer.py --help.
.PHONY: bench-transfer
bench-transfer: setup
	$(PY) bench/bench_transfer.py $(BENCH_ARGS)

# The host side alone: the runtime's bridge + control server and a host_lib application on an
# in-process loopback NIC (no target, no root): bulk Gbit/s each way and 64 B RPC/s, per CPU
# second, next to Linux loopback TCP. BENCH_ARGS="--profile /tmp/prof" adds py-spy hot spots;
# see bench/bench_host.py --help.
.PHONY: bench-host
bench-host: setup
	$(PY) bench/bench_host.py $(BENCH_ARGS)

# Goodput penalty under 0.1/1/5 % loss, Jain's fairness for 16 and 256 flows through one
# bottleneck (p4tas against Linux, same run), and the pacer's per-packet cost at 1k..1M flows.
# BENCH_ARGS="--only c" or "--flows 16"; see bench/bench_cc.py --help.
.PHONY: bench-cc
bench-cc: setup
	$(PY) bench/bench_cc.py $(BENCH_ARGS)

# Scale (issue 18): softnic's, the runtime's and host_lib's bytes per flow, per-packet and
# per-interval costs at 1k..1M installed flows (up to MAX_FLOWS), fairness of 256/1,024/4,096
# flows through one bottleneck and 10,000 concurrent RPC clients, p4tas next to Linux, per
# TARGET (a few minutes). BENCH_ARGS="--flows 256,1024,4096,10k --clients 100k" goes bigger,
# "--only inproc,records" needs no root; see bench/bench_scale.py --help.
.PHONY: bench-scale
bench-scale: setup
	$(PY) bench/bench_scale.py $(BENCH_ARGS)

# HTTP load (wrk) on an unmodified `python -m http.server` launched on p4tas (python -m
# host_lib.run) against the same server on Linux; BENCH_ARGS="--duration 20 --connections 8";
# see bench/bench_http.py --help.
.PHONY: bench-http
bench-http: setup
	$(PY) bench/bench_http.py $(BENCH_ARGS)

# Packets per second of the p4tas pipeline on bmv2 and on softnic (same traffic, same run);
# BENCH_ARGS="--packets 40000 --profile" adds softnic's hot spots; see bench/bench_targets.py.
.PHONY: bench-targets
bench-targets: setup
	$(PY) bench/bench_targets.py $(BENCH_ARGS)
