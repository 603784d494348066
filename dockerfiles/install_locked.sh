#!/bin/sh
# Installs a worker's lock files into the image, then removes what inference never loads.
#   install_locked.sh DIR      DIR holds requirements.lock, and requirements-nodeps.lock and image-prune.txt
#                              (site-packages paths to leave out, applied by shared/prune.py) when the worker
#                              has them; requirements-git.txt (packages PyPI lacks, with install_unpublished.sh
#                              beside it) is installed from LOCAL_WHEELS when that folder holds them
# WITH_TRITON=1 keeps triton (torch.compile) and what it needs at run time: torch's C++ headers and a C
# compiler, which triton uses to build its kernel launcher on first use.
set -eu
lock_dir=$1
pip install --no-compile --no-deps --require-hashes -r "$lock_dir/requirements.lock"
if [ -f "$lock_dir/requirements-nodeps.lock" ]; then
    pip install --no-compile --no-deps --require-hashes -r "$lock_dir/requirements-nodeps.lock"
fi
if [ -f "$lock_dir/requirements-git.txt" ]; then
    sh "$lock_dir/install_unpublished.sh" "$lock_dir/requirements-git.txt" "${LOCAL_WHEELS:-}"
fi
site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cd "$site"
if [ -d torch ]; then
    if [ "${WITH_TRITON:-0}" = 1 ]; then
        apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
    else
        pip uninstall -y triton  # ~0.7 GB
        rm -r torch/include  # C++ headers (~60 MB): read only when torch.compile generates code
    fi
    # The protobuf compiler torch's wheel ships (~10 MB): a build tool, never run by inference.
    rm -f torch/bin/protoc*
fi
# Static archives in the CUDA wheels (~6 MB): link-time only, nothing loads them at run time.
if [ -d nvidia ]; then find nvidia -name '*.a' -delete; fi
# torchaudio's last release is built against an older torch: only its pure-Python parts (resample,
# spectrogram) are used, and its compiled extension would fail to load beside this torch.
if [ -d torchaudio ]; then rm -f torchaudio/lib/*.so; fi
if [ -f "$lock_dir/image-prune.txt" ]; then
    python "$lock_dir/prune.py" "$lock_dir/image-prune.txt" "$site"
fi
rm -r "$lock_dir"
