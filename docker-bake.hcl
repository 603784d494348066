# Every worker's image, built by `docker buildx bake` (or one: `docker buildx bake musicgen`; `make image
# WORKER=<worker>` builds one this way when Docker has buildx). One target per dockerfiles/<worker>.Dockerfile,
# named as the worker; tests/test_deploy.py fails when a Dockerfile has no target, a target names a missing
# file, or a target's args differ from the ARGs its Dockerfile declares.
# Layout as RunPod's own workers keep it (read 2026-12-06): runpod-workers/worker-comfyui docker-bake.hcl at
# d2a557235b3800d68dcc6fa3259125fdf4bed8a6 (one target per image, a default group of all, variables for the
# registry, tag and build args) and runpod-workers/worker-vllm docker-bake.hcl at
# 7a925039a53a10eab38d1764eb717a2ea5bdee07.
#
#   REGISTRY=ghcr.io/me TAG=1.0.0 docker buildx bake --push      # every image, pushed
#   docker buildx bake --print                                   # the resolved targets, nothing built

variable "REGISTRY" {
  # Where the images go, e.g. ghcr.io/<owner> or docker.io/<user>; empty: local names only.
  default = ""
}

variable "TAG" {
  default = "dev"
}

variable "BASE_IMAGE" {
  # Any base with python3.11 and pip (the Dockerfiles' own default).
  default = "python:3.11-slim-bookworm"
}

variable "WITH_TRITON" {
  # 1 keeps triton (torch.compile: VOXCPM_COMPILE, HIGGS_AUDIO_STATIC_CACHE) and a C compiler in torch images.
  default = "0"
}

variable "LOCAL_WHEELS" {
  # A folder inside the build holding wheels of packages PyPI lacks (HeartMuLa's heartlib); empty: from GitHub.
  default = ""
}

# <worker>-worker:<TAG>, under REGISTRY when it is set (scripts/image.py's default tag is the same).
function "tag_for" {
  params = [worker]
  result = REGISTRY == "" ? "${worker}-worker:${TAG}" : "${REGISTRY}/${worker}-worker:${TAG}"
}

group "default" {
  targets = ["musicgen", "higgs_audio", "voxcpm", "ace_step", "diffsinger", "heartmula"]
}

target "_common" {
  context   = "."
  platforms = ["linux/amd64"]
}

target "musicgen" {
  inherits   = ["_common"]
  dockerfile = "dockerfiles/musicgen.Dockerfile"
  args = {
    BASE_IMAGE  = BASE_IMAGE
    WITH_TRITON = WITH_TRITON
  }
  tags = [tag_for("musicgen")]
}

target "higgs_audio" {
  inherits   = ["_common"]
  dockerfile = "dockerfiles/higgs_audio.Dockerfile"
  args = {
    BASE_IMAGE  = BASE_IMAGE
    WITH_TRITON = WITH_TRITON
  }
  tags = [tag_for("higgs-audio")]
}

target "voxcpm" {
  inherits   = ["_common"]
  dockerfile = "dockerfiles/voxcpm.Dockerfile"
  args = {
    BASE_IMAGE  = BASE_IMAGE
    WITH_TRITON = WITH_TRITON
  }
  tags = [tag_for("voxcpm")]
}

target "ace_step" {
  inherits   = ["_common"]
  dockerfile = "dockerfiles/ace_step.Dockerfile"
  args = {
    BASE_IMAGE  = BASE_IMAGE
    WITH_TRITON = WITH_TRITON
  }
  tags = [tag_for("ace-step")]
}

target "diffsinger" {
  inherits   = ["_common"]
  dockerfile = "dockerfiles/diffsinger.Dockerfile"
  args = {
    BASE_IMAGE = BASE_IMAGE
  }
  tags = [tag_for("diffsinger")]
}

target "heartmula" {
  inherits   = ["_common"]
  dockerfile = "dockerfiles/heartmula.Dockerfile"
  args = {
    BASE_IMAGE   = BASE_IMAGE
    WITH_TRITON  = WITH_TRITON
    LOCAL_WHEELS = LOCAL_WHEELS
  }
  tags = [tag_for("heartmula")]
}
