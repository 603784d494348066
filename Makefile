# Every target sets itself up: a fresh clone needs only python3 (3.11) and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VOLUME := .volume
# This machine family keeps a CPU build of torch on local disk; pip prefers it when the folder exists.
export PIP_FIND_LINKS := $(if $(wildcard /opt/wheels),/opt/wheels,$(PIP_FIND_LINKS))
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# torchaudio's last release is built against an older torch: only its pure-Python parts (resample,
# spectrogram) are used, and its compiled extension would fail to load beside torch 2.13.
STRIP_TORCHAUDIO_EXTENSION = rm -f "$$($(PY) -c 'import importlib.util as u, pathlib as p; \
	print(p.Path(u.find_spec("torchaudio").origin).parent)')"/lib/*.so

DEMO_ENV := VOLUME_ROOT=$(VOLUME) MODEL_ID=tiny-random/musicgen OUTPUT_DIR=outputs

.DEFAULT_GOAL := help
.PHONY: help venv tiny-models demo demo-higgs_audio demo-voxcpm demo-ace_step serve test lint benchmark clean

help: ## list the targets
	@grep -E '^[a-z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: handlers/*/requirements*.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(foreach file,$(wildcard handlers/*/requirements.txt),-r $(file)) -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps $(foreach file,$(wildcard handlers/*/requirements-nodeps.txt),-r $(file))
	$(STRIP_TORCHAUDIO_EXTENSION)
	touch $@

venv: $(VENV)/.installed ## create the virtual environment with every handler's pinned dependencies

$(VOLUME)/.built: $(VENV)/.installed scripts/build_tiny_models.py
	$(PY) scripts/build_tiny_models.py --volume $(VOLUME)
	touch $@

tiny-models: $(VOLUME)/.built ## build the tiny random-weight models into ./.volume

demo: $(VOLUME)/.built ## run the MusicGen worker once on test_input.json; audio lands in ./outputs
	$(DEMO_ENV) $(PY) handlers/musicgen/handler.py

demo-higgs_audio: $(VOLUME)/.built ## the same for the Higgs Audio V2 worker
	VOLUME_ROOT=$(VOLUME) MODEL_ID=tiny-random/higgs-audio-v2-generation OUTPUT_DIR=outputs \
		$(PY) handlers/higgs_audio/handler.py

demo-voxcpm: $(VOLUME)/.built ## the same for the VoxCPM worker
	VOLUME_ROOT=$(VOLUME) MODEL_ID=tiny-random/VoxCPM2 OUTPUT_DIR=outputs $(PY) handlers/voxcpm/handler.py

demo-ace_step: $(VOLUME)/.built ## the same for the ACE-Step 1.5 worker
	VOLUME_ROOT=$(VOLUME) MODEL_ID=tiny-random/acestep-v15-base-diffusers OUTPUT_DIR=outputs \
		$(PY) handlers/ace_step/handler.py

serve: $(VOLUME)/.built ## serve the MusicGen worker's local API on http://localhost:8000
	$(DEMO_ENV) $(PY) -m handlers.musicgen --rp_serve_api --rp_api_port 8000

test: $(VENV)/.installed ## run the test suite (builds its own tiny models and S3 server)
	$(PY) -m pytest

lint: $(VENV)/.installed ## ruff
	$(VENV)/bin/ruff check .

benchmark: $(VENV)/.installed ## handler vs bare-library ratios on bench-size random models (and time to first streamed chunk)
	for model in musicgen higgs_audio voxcpm; do $(PY) scripts/benchmark.py $$model || exit 1; done

clean: ## remove the venv, the tiny volume and local outputs
	rm -rf $(VENV) $(VOLUME) outputs
