"""Write bytecode, at image build time, for every module a worker imports before its first job.

    python -m shared.bytecode handlers.<worker>.adapter

The images install packages with --no-compile (bytecode for the whole site-packages costs ~280 MB) and
run as a user that cannot write there, so without this every cold start compiles its imports again.
The image never changes, so the bytecode is not checked against its source at import (unchecked hashes).
Importing the worker (and the SDK's serving loop) is the list of what to compile: nothing is guessed.
"""

from __future__ import annotations

import importlib
import py_compile
import sys


def compile_imported(module_names: list[str]) -> int:
    for name in [*module_names, "shared.serving", "runpod.serverless.modules.rp_scale"]:
        importlib.import_module(name)
    compiled = 0
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None)
        if not source or not source.endswith(".py"):
            continue
        try:
            py_compile.compile(source, doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        except (py_compile.PyCompileError, OSError):
            continue  # a file the interpreter already failed to compile, or cannot write beside: left as it is
        compiled += 1
    return compiled


if __name__ == "__main__":
    print(f"bytecode written for {compile_imported(sys.argv[1:])} imported modules")
