# DiffSinger worker. Build from the repository root (or `make image WORKER=diffsinger`):
#   docker build -f dockerfiles/diffsinger.Dockerfile -t diffsinger-worker .
# Thin: no weights inside; they are read from the network volume at /runpod-volume.
# onnxruntime-gpu and NVIDIA's CUDA 13.0 wheels (no torch): a slim Python base is enough; pass
# --build-arg BASE_IMAGE=... to build on another base that has python3.11 and pip.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    TRANSFORMERS_VERBOSITY=error \
    VOLUME_ROOT=/runpod-volume \
    OUTPUT_DIR=/tmp/outputs

WORKDIR /app
# The worker's lock: every package pinned with its hashes (scripts/lock_requirements.py), so a rebuild
# installs the very same files.
COPY dockerfiles/install_locked.sh shared/prune.py handlers/diffsinger/requirements.lock /tmp/worker/
RUN sh /tmp/worker/install_locked.sh /tmp/worker

COPY shared/ shared/
COPY handlers/__init__.py handlers/
COPY handlers/diffsinger/ handlers/diffsinger/
# Bytecode for what the worker imports before its first job, not the whole site-packages (~280 MB).
RUN python -m shared.bytecode handlers.diffsinger.adapter

# Not root: the code that handles untrusted input cannot write to the image or the system.
RUN useradd --create-home --uid 1000 worker
USER worker

CMD ["python", "-m", "handlers.diffsinger"]
