# Build, test, run and publish the FM/WALS SageMaker image. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
VENV_STAMP := $(VENV)/.installed
VENV_SDK3 ?= .venv-sdk3
VENV_SDK3_STAMP := $(VENV_SDK3)/.installed
VENV_MXNET ?= .venv-mxnet
# MXNet 1.9.1 needs numpy 1.23.5, whose last wheels are for Python 3.11.
PYTHON_MXNET ?= $(shell command -v python3.11 || echo $(PYTHON))
VENV_MXNET_STAMP := $(VENV_MXNET)/.installed
IMAGE ?= fm-wals:latest
LOCAL_BASE_IMAGE ?= fm-wals-base:bookworm
# Empty: the public python:3.11-slim-bookworm when pullable, else $(LOCAL_BASE_IMAGE) (make base-image).
BASE_IMAGE ?=
MODE ?= docker
FILE ?= local_test/requests/digits.json
CONTENT_TYPE ?= application/json
ACCEPT ?= application/json

export IMAGE LOCAL_BASE_IMAGE BASE_IMAGE

.PHONY: help venv venv-sdk3 venv-mxnet lint test test-fast docker-engine base-image image push local-train local-serve local-predict \
        demo bench sample-data clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

venv: $(VENV_STAMP) ## create .venv from requirements-dev.txt, with the project installed editable (instant when up to date)

$(VENV_STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -r requirements-dev.txt
	$(VENV)/bin/python -m pip install -q --no-deps -e .
	touch $@

venv-sdk3: $(VENV_SDK3_STAMP) ## create .venv-sdk3 (SageMaker SDK 3.x) from requirements-sdk3.txt for its recipe's test

$(VENV_SDK3_STAMP): requirements-sdk3.txt
	test -x $(VENV_SDK3)/bin/python || $(PYTHON) -m venv $(VENV_SDK3)
	$(VENV_SDK3)/bin/python -m pip install -q -r requirements-sdk3.txt
	touch $@

venv-mxnet: $(VENV_MXNET_STAMP) ## create .venv-mxnet (MXNet 1.9.1, Python 3.11) from requirements-mxnet.txt for the format tests

# When MXNet cannot be installed here the target says so and goes on: its tests then skip with that reason, and
# fail under REQUIRE_DOCKER=1 (make test), never passing silently.
$(VENV_MXNET_STAMP): requirements-mxnet.txt
	if (test -x $(VENV_MXNET)/bin/python || $(PYTHON_MXNET) -m venv $(VENV_MXNET)) \
	    && $(VENV_MXNET)/bin/python -m pip install -q -r requirements-mxnet.txt; then touch $@; \
	else echo "WARNING: MXNet 1.9.1 did not install into $(VENV_MXNET) with $(PYTHON_MXNET) (it needs Python 3.11):" \
	    "tests/integration/test_mxnet_compat.py cannot run" >&2; fi

lint: venv ## ruff check + mypy (settings in pyproject.toml); both run, either failing fails
	status=0; $(VENV)/bin/ruff check . || status=1; $(VENV)/bin/mypy || status=1; exit $$status

docker-engine: ## install Debian's Docker engine if missing and start dockerd if not running
	scripts/install_docker.sh

base-image: docker-engine ## local Debian bookworm + python3 base (debootstrap); skipped when it exists
	scripts/make_base_image.sh $(LOCAL_BASE_IMAGE)

image: docker-engine ## build $(IMAGE) (public base when pullable, else the local base)
	scripts/build_image.sh

# The README's test command: works on a fresh machine as root (installs and starts the engine itself).
# Lint and pytest both run (for a full report) and either failing fails the target.
test: venv venv-sdk3 venv-mxnet docker-engine image ## engine + images + lint + the whole pytest suite (Docker tests required)
	status=0; \
	$(MAKE) --no-print-directory lint || status=1; \
	REQUIRE_DOCKER=1 $(VENV)/bin/python -m pytest --continue-on-collection-errors || status=1; \
	exit $$status

test-fast: venv ## pytest without the slow and the Docker tests: no engine or image needed
	$(VENV)/bin/python -m pytest -m "not slow and not docker"

push: docker-engine ## build and push to ECR (AWS_ACCOUNT_ID, AWS_REGION, ECR_REPOSITORY, TAG) or REGISTRY=host:port/name
	scripts/push_image.sh

local-train: ## train on local_test/test_dir (MODE=docker|process)
	MODE=$(MODE) local_test/train_local.sh

local-serve: ## serve local_test/test_dir/model on :8080 (MODE=docker|process, PORT)
	MODE=$(MODE) local_test/serve_local.sh

local-predict: ## POST FILE with CONTENT_TYPE/ACCEPT to the running server
	local_test/predict.sh $(FILE) $(CONTENT_TYPE) $(ACCEPT)

demo: venv ## train on the bundled sample and serve a prediction (Docker if available, else local processes)
	scripts/demo.sh

bench: venv ## run every bench/bench_*.py (see docs/benchmarks.md)
	@for script in bench/bench_*.py; do \
	    module=$${script%.py}; module=$${module//\//.}; \
	    echo "== $$module"; $(VENV)/bin/python -m $$module; \
	done

sample-data: venv ## regenerate the bundled sample data set and request files under local_test/
	$(VENV)/bin/python scripts/make_sample_data.py

clean: ## remove local_test outputs and caches (keeps .venv and images)
	rm -rf local_test/test_dir/model local_test/test_dir/output .pytest_cache .mypy_cache .ruff_cache
