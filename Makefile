# Every target sets itself up: a fresh clone needs only python3 (3.11) and make.
# Workers are discovered from handlers/*/: a new worker needs no change here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VOLUME := .volume
ALL_WORKERS := $(sort $(patsubst handlers/%/__init__.py,%,$(wildcard handlers/*/__init__.py)))
# WORKERS=a,b narrows what some targets do (gpu-check); the venv always holds every worker's requirements.
WORKERS := $(ALL_WORKERS)
# The worker `make demo` and `make serve` run (the project's main job); demo-<worker> runs any other.
DEFAULT_WORKER := musicgen
# This machine family keeps a CPU build of torch on local disk; pip prefers it when the folder exists.
export PIP_FIND_LINKS := $(if $(wildcard /opt/wheels),/opt/wheels,$(PIP_FIND_LINKS))
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# The images install the same way: shared pins, the worker's requirements, one set of constraints.
INSTALL := $(PY) -m pip install -q -c shared/constraints.txt

.DEFAULT_GOAL := help
# demo-<worker> and serve-<worker> are pattern rules: GNU make skips pattern rules for .PHONY targets.
.PHONY: help venv strip-torchaudio browser tiny-models demo serve schemas ui test test-unit test-gpu test-reference lock image image-check \
	endpoint-table deploy lint benchmark \
	benchmark-batching benchmark-cold-start clean

help: ## list the targets
	@grep -E '^[a-z_%-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'
	@echo "  workers: $(WORKERS)"

# Packages PyPI lacks (handlers/*/requirements-git.txt) come from this folder when it holds their wheels.
LOCAL_WHEELS ?= $(wildcard ../shared/wheels)

$(VENV)/.installed: shared/requirements.txt shared/constraints.txt handlers/*/requirements*.txt requirements-dev.txt \
		pyproject.toml audio_client/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(INSTALL) -r shared/requirements.txt $(foreach worker,$(ALL_WORKERS),-r handlers/$(worker)/requirements.txt) \
		-r requirements-dev.txt
	$(INSTALL) --no-deps $(foreach file,$(wildcard handlers/*/requirements-nodeps.txt),-r $(file))
	for file in $(wildcard handlers/*/requirements-git.txt); do \
		PIP="$(PY) -m pip" sh dockerfiles/install_unpublished.sh $$file $(LOCAL_WHEELS) || exit 1; done
	$(MAKE) --no-print-directory strip-torchaudio
	$(PY) -m pip install -q --no-deps -e ./audio_client  # the audio-client command (its own distribution)
	touch $@

# torchaudio's last release is built against an older torch: only its pure-Python parts (resample,
# spectrogram) are used, and its compiled extension would fail to load beside torch 2.13. PY= names the venv.
strip-torchaudio:
	rm -f "$$($(PY) -c 'import importlib.util as u, pathlib as p; \
		print(p.Path(u.find_spec("torchaudio").origin).parent)')"/lib/*.so

venv: $(VENV)/.installed ## create the virtual environment with every worker's pinned dependencies

# The page's tests drive a real Chromium: Debian's package (Playwright's own builds come from a CDN).
# CHROMIUM names another Chromium or Chrome binary; the tests use the same variable.
CHROMIUM ?= $(firstword $(wildcard /usr/bin/chromium /usr/bin/chromium-browser /usr/bin/google-chrome))
browser: ## install Debian's Chromium for the browser tests, when no CHROMIUM is found
	@if [ -n "$(CHROMIUM)" ]; then echo "browser: $(CHROMIUM)"; \
	elif command -v apt-get >/dev/null; then \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq chromium >/dev/null; \
	else echo "no Chromium: install one and set CHROMIUM=/path/to/chromium" >&2; exit 1; fi

$(VOLUME)/.built-%: $(VENV)/.installed handlers/%/fixtures.py
	$(PY) scripts/build_tiny_models.py --volume $(VOLUME) $*
	touch $@

tiny-models: $(addprefix $(VOLUME)/.built-,$(WORKERS)) ## build every worker's tiny random-weight models into ./.volume

demo: demo-$(DEFAULT_WORKER) ## run the default worker (MusicGen) once on its test_input.json; audio lands in ./outputs

demo-%: $(VOLUME)/.built-% ## demo-<worker>: run that worker once on its test_input.json
	$(PY) scripts/run_tiny.py $* --volume $(VOLUME)

serve: serve-$(DEFAULT_WORKER) ## serve the default worker's local API on http://localhost:8000

serve-%: $(VOLUME)/.built-% ## serve-<worker>: that worker's local API on http://localhost:8000
	$(PY) scripts/run_tiny.py $* --volume $(VOLUME) --rp_serve_api --rp_api_port 8000

schemas: $(VENV)/.installed ## write the client's copy of the workers' request schemas (audio_client/workers.json)
	$(PY) scripts/client_schemas.py

ui: $(VENV)/.installed ## the browser page on http://127.0.0.1:8765/ (AUDIO_CLIENT_<WORKER>: targets; default: make serve's)
	$(if $(filter AUDIO_CLIENT_%,$(.VARIABLES)),,AUDIO_CLIENT_$(shell echo $(DEFAULT_WORKER) | tr a-z A-Z)=http://127.0.0.1:8000) \
		$(VENV)/bin/audio-client ui --worker-output-dir outputs --out outputs/ui

test: $(VENV)/.installed browser ## every test but the GPU tier (builds its own tiny models, S3 server and browser)
	$(PY) -m pytest -m "not gpu and not reference"

test-unit: $(VENV)/.installed ## the unit tier: no model, seconds
	$(PY) -m pytest -m unit

test-gpu: $(VENV)/.installed ## the GPU tier (needs CUDA: run it on a lent GPU machine)
	$(PY) -m pytest -m gpu

# Independent implementations the reference tier compares workers with (handlers/<worker>/reference/), each in a
# venv of its own, .cache/venv-reference-<worker> (git ignores .cache/): their pins clash with the workers' and with
# each other's. requirements-nodeps.txt holds what is installed without its declared dependencies.
REFERENCE_WORKERS := $(patsubst handlers/%/reference/requirements.txt,%,$(wildcard handlers/*/reference/requirements.txt))
.SECONDEXPANSION:
.cache/venv-reference-%/.installed: $$(wildcard handlers/$$*/reference/requirements*.txt)
	test -x $(@D)/bin/python || $(PYTHON) -m venv $(@D)
	$(@D)/bin/python -m pip install -q -r handlers/$*/reference/requirements.txt
	$(if $(wildcard handlers/$*/reference/requirements-nodeps.txt),\
		$(@D)/bin/python -m pip install -q --no-deps -r handlers/$*/reference/requirements-nodeps.txt)
	if $(@D)/bin/python -c 'import importlib.util as u; exit(u.find_spec("torchaudio") is None)'; then \
		$(MAKE) --no-print-directory strip-torchaudio PY=$(@D)/bin/python; fi
	touch $@

REFERENCE_VENVS := $(foreach worker,$(REFERENCE_WORKERS),.cache/venv-reference-$(worker)/.installed)
test-reference: $(VENV)/.installed $(REFERENCE_VENVS) ## cross-check workers with independent implementations
	$(PY) -m pytest -m reference

lock: $(VENV)/.installed ## rewrite each image's hash-pinned lock from the requirements (needs PyPI)
	$(PY) scripts/lock_requirements.py

image: $(VENV)/.installed ## image WORKER=<worker>: build its image (docker buildx bake when there, else docker build or buildah; IMAGE_BUILD_FLAGS adds flags)
	$(if $(WORKER),,$(error name the worker: make image WORKER=<one of $(WORKERS)>))
	$(PY) scripts/image.py build $(WORKER)

image-check: $(VENV)/.installed ## image-check WORKER=<worker>: run the built image on the tiny volume, time its start, print its sizes
	$(if $(WORKER),,$(error name the worker: make image-check WORKER=<one of $(WORKERS)>))
	$(MAKE) $(VOLUME)/.built-$(WORKER)
	$(PY) scripts/image.py check $(WORKER) --volume $(VOLUME)

endpoint-table: $(VENV)/.installed ## rewrite the README's endpoint table from deploy/*.json
	$(PY) scripts/endpoint_table.py --write

deploy: $(VENV)/.installed ## deploy WORKER=<worker> IMAGE=<registry/name:tag>: create or update its RunPod template and endpoint (RUNPOD_API_KEY)
	$(if $(WORKER),,$(error name the worker: make deploy WORKER=<one of $(WORKERS)> IMAGE=<image>))
	$(if $(IMAGE),,$(error name the image: make deploy WORKER=$(WORKER) IMAGE=<registry/name:tag>))
	$(PY) scripts/deploy.py $(WORKER) --image $(IMAGE) $(DEPLOY_FLAGS)

lint: $(VENV)/.installed ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

benchmark: $(VENV)/.installed ## worker vs bare-library ratios on bench-size random models, every worker
	for worker in $(WORKERS); do $(PY) scripts/benchmark.py $$worker || exit 1; done

benchmark-batching: $(VENV)/.installed ## benchmark-batching [WORKER=<worker>]: 8 concurrent jobs batched vs one by one
	$(PY) scripts/benchmark_batching.py $(or $(WORKER),$(DEFAULT_WORKER))

benchmark-cold-start: $(VENV)/.installed ## benchmark-cold-start [WORKER=<worker>]: fresh worker to first result vs a bare script
	$(PY) scripts/benchmark_cold_start.py $(or $(WORKER),$(DEFAULT_WORKER))

# make gpu-check (scripts/gpu_check.py): every worker (WORKERS=a,b for some) sized on this machine's GPU, report in
# OUT. A python3 that imports a CUDA torch (a pod image's) is used as it is: a venv on it with its site-packages
# (.cache/venv-gpu-check) gets only the pinned packages it lacks, from WHEELHOUSE (no network) when given. Else
# the project's venv. DEVICE=cpu: the same on the tiny models. SKIP=tests,measure,batching,residency; BUDGET=s.
.PHONY: gpu-check wheelhouse
GPU_CHECK_WORKERS := $(if $(filter command line,$(origin WORKERS)),$(WORKERS))
OUT ?= outputs/gpu-check
gpu-check: ## gpu-check [WORKERS= OUT= VOLUME_ROOT= DEVICE= SKIP= WHEELHOUSE=]: measure every worker on this GPU
	@if [ "$(DEVICE)" != cpu ] && $(PYTHON) scripts/gpu_check_env.py has-cuda-torch; then \
		py=$$(set -o pipefail; $(PYTHON) scripts/gpu_check_env.py venv $(if $(WHEELHOUSE),--wheelhouse $(WHEELHOUSE)) \
			| tail -n1) || exit 1; \
	else $(MAKE) --no-print-directory $(VENV)/.installed || exit 1; py=$(PY); fi; \
	$$py scripts/gpu_check.py --out "$(OUT)" --device $(or $(DEVICE),auto) --workers "$(GPU_CHECK_WORKERS)" \
		$(if $(VOLUME_ROOT),--volume-root "$(VOLUME_ROOT)") $(if $(SKIP),--skip $(SKIP)) $(if $(BUDGET),--budget $(BUDGET))

# On a networked machine, for a GPU host without network: `make wheelhouse PYTHON_VERSION=3.12 WHEELHOUSE=dir`, then
# copy dir there and `make gpu-check WHEELHOUSE=dir`. No torch, no CUDA libraries (the host's are used), and with
# HOST_PACKAGES=<the host's `pip freeze` in a file> nothing else the host ships either (its versions are used).
wheelhouse: ## wheelhouse WHEELHOUSE=<dir> [PYTHON_VERSION=3.12 HOST_PACKAGES=freeze.txt]: what gpu-check needs beside torch
	$(if $(WHEELHOUSE),,$(error name the folder: make wheelhouse WHEELHOUSE=<dir> [PYTHON_VERSION=3.12]))
	$(PYTHON) scripts/gpu_check_env.py wheelhouse --dest "$(WHEELHOUSE)" --python-version $(or $(PYTHON_VERSION),3.12) \
		$(if $(LOCAL_WHEELS),--local-wheels $(LOCAL_WHEELS)) $(if $(WHEELHOUSE_EXCLUDE),--exclude $(WHEELHOUSE_EXCLUDE)) \
		$(if $(HOST_PACKAGES),--host-packages $(HOST_PACKAGES))

clean: ## remove the venv, the tiny volume and local outputs
	rm -rf $(VENV) .cache/venv-reference-* .cache/venv-gpu-check $(VOLUME) outputs
