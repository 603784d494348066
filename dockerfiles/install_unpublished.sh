#!/bin/sh
# Installs the packages PyPI lacks, without their declared dependencies (the worker's requirements.txt
# provides what they import).
#   install_unpublished.sh FILE [WHEELS_DIR]
# FILE lists one package per line as "NAME==VERSION @ URL" (URL: an archive of the pinned commit); the wheel
# WHEELS_DIR/NAME-VERSION-*.whl is installed instead when it is there (machines that cannot reach the URL).
# PIP names the pip to run (default: pip).
set -eu
file=$1
wheels=${2:-}
grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$file" | while read -r pinned _at url; do
    name=${pinned%%==*}
    version=${pinned#*==}
    wheel=""
    if [ -n "$wheels" ]; then
        wheel=$(find "$wheels" -maxdepth 1 -name "$name-$version-*.whl" 2>/dev/null | head -n 1)
    fi
    ${PIP:-pip} install --no-compile --no-deps "${wheel:-$url}"
done
