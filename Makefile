# oomguard: one entry point for setting up, auditing and testing.
#
#   make audit      the main job: read-only audit of this machine with oomguard_check
#   make test       everything CI runs: lint, unit tests, collection install, Molecule scenarios
#   make molecule   every Molecule scenario, the drill included (SCENARIOS=... to choose)
#   make collection build the oomguard.oomguard collection tarball under build/
#   make bench      benchmarks (printed figures)
#   make drill      the VM lane alone: kernel checks and the memory-exhaustion drill (QEMU)
#
# Both install what they need first (scripts/setup). Run them as root on a fresh
# Debian 12 machine; `make audit` also works unprivileged (it sees less).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.collections
export PYTHONDONTWRITEBYTECODE := 1
# Every scenario; the drill is part of `vm` (one converge serves the kernel checks and
# the storms). run-all.sh runs the container scenarios beside the VM one.
SCENARIOS ?= default fleet vm
# What `make test` (and so CI) runs.
TEST_SCENARIOS ?= $(SCENARIOS)

.PHONY: help setup setup-test audit lint unit checks images molecule drill test bench collection collection-test clean

help:
	@sed -n 's/^#   //p' Makefile

setup:
	scripts/setup

setup-test:
	scripts/setup --test

audit: setup
	ansible-playbook playbooks/audit.yml

lint: setup
	yamllint --strict .
	ansible-lint --profile production --offline

unit: setup
	pytest tests/unit

images: setup-test
	molecule/images/build.sh

molecule: setup-test images
	molecule/run-all.sh $(SCENARIOS)

# The VM lane alone: two QEMU VMs (oomguard and a control), the kernel checks of every
# role and the end-to-end memory-exhaustion drill (storms with swap, logins timed
# during them, watchdog reset); `make test` runs it too.
drill: setup-test images
	molecule/run-all.sh vm
	@cat molecule/vm/output/summary.txt 2>/dev/null || true

# The checks (one after the other) run beside the image build, which waits mostly on
# downloads and dpkg: minutes of CI's budget on two cores. Output is kept per target.
test: setup-test
	$(MAKE) --no-print-directory -j2 --output-sync=target checks images
	$(MAKE) --no-print-directory molecule SCENARIOS="$(TEST_SCENARIOS)"

checks: setup
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory collection-test

collection: setup
	scripts/build-collection

collection-test: setup
	pytest tests/collection

bench: setup
	bench/run

clean:
	rm -rf reports build .pytest_cache
