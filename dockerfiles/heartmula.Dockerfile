# HeartMuLa worker. Build from the repository root (or `make image WORKER=heartmula`):
#   docker build -f dockerfiles/heartmula.Dockerfile -t heartmula-worker .
# Thin: no weights inside; they are read from the network volume at /runpod-volume.
# torch's PyPI wheel carries its own CUDA libraries, so a slim Python base is enough; pass
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
    TQDM_DISABLE=1 \
    VOLUME_ROOT=/runpod-volume \
    OUTPUT_DIR=/tmp/outputs

WORKDIR /app
# The worker's lock: every package pinned with its hashes (scripts/lock_requirements.py), so a rebuild
# installs the very same files. triton serves only torch.compile: left out unless --build-arg WITH_TRITON=1.
# heartlib is not on PyPI: it comes from GitHub at the commit requirements-git.txt pins, or from a wheel of
# it in LOCAL_WHEELS, a folder the build can read (e.g. buildah's -v /path/to/wheels:/wheels:ro).
ARG WITH_TRITON=0
ARG LOCAL_WHEELS=
COPY dockerfiles/install_locked.sh shared/prune.py handlers/heartmula/requirements.lock /tmp/worker/
COPY handlers/heartmula/requirements-nodeps.lock handlers/heartmula/image-prune.txt /tmp/worker/
COPY dockerfiles/install_unpublished.sh handlers/heartmula/requirements-git.txt /tmp/worker/
RUN sh /tmp/worker/install_locked.sh /tmp/worker

COPY shared/ shared/
COPY handlers/__init__.py handlers/
COPY handlers/heartmula/ handlers/heartmula/
# Bytecode for what the worker imports before its first job, not the whole site-packages (~280 MB).
RUN python -m shared.bytecode handlers.heartmula.adapter

# Not root: the code that handles untrusted input cannot write to the image or the system.
RUN useradd --create-home --uid 1000 worker
USER worker

CMD ["python", "-m", "handlers.heartmula"]
