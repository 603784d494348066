#!/bin/sh
# Installs a worker's lock files into the image, then removes what inference never loads.
#   install_locked.sh DIR      DIR holds requirements.lock (and requirements-nodeps.lock when the worker has one)
# WITH_TRITON=1 keeps triton (torch.compile) and what it needs at run time: torch's C++ headers and a C
# compiler, which triton uses to build its kernel launcher on first use.
set -eu
lock_dir=$1
pip install --no-compile --no-deps --require-hashes -r "$lock_dir/requirements.lock"
if [ -f "$lock_dir/requirements-nodeps.lock" ]; then
    pip install --no-compile --no-deps --require-hashes -r "$lock_dir/requirements-nodeps.lock"
fi
site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ "${WITH_TRITON:-0}" = 1 ]; then
    apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
else
    pip uninstall -y triton  # ~0.7 GB
    rm -r "$site/torch/include"  # C++ headers (~60 MB): read only when torch.compile generates code
fi
# The protobuf compiler torch's wheel ships (~10 MB): a build tool, never run by inference.
rm -f "$site"/torch/bin/protoc*
# torchaudio's last release is built against an older torch: only its pure-Python parts (resample,
# spectrogram) are used, and its compiled extension would fail to load beside this torch.
if [ -d "$site/torchaudio" ]; then rm -f "$site"/torchaudio/lib/*.so; fi
rm -r "$lock_dir"
