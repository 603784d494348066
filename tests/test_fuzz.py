"""Generated requests against every worker: each gets a result or an error string, never an internal error.

Inputs come from the request schema: each field is left out, given the contract job's value, or given
any JSON value (wrong types, NaN, huge numbers, odd strings), plus unknown keys. The operator locks of
the worker's contract (`fuzz_locks`) keep every accepted job cheap, as LOCKED_PARAMETERS would.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import workers
from shared.pipeline import Worker
from shared.settings import Settings

pytestmark = pytest.mark.tiny

WORKERS = workers.worker_names()
EXAMPLES = 25

# Strings the probe found trouble with, mixed into the random ones.
TRICKY = ("data:", "data:audio/wav;base64", "data:,", "\u0000", "", "   ", "../x", "s3://audio-results/in.wav",
          "http://user:pass@127.0.0.1/a.wav", "https://[::7f00:1]/a.wav", "QUJD", "demo_voice")  # fmt: skip
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(TRICKY),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


def requests_for(worker: str) -> st.SearchStrategy[Any]:
    case = workers.module(worker, "fixtures").CONTRACT
    fields = workers.adapter_class(worker).request_model.model_fields
    examples = case.job_input | case.long_job_input
    optional = {name: (st.just(examples[name]) | json_values) if name in examples else json_values for name in fields}
    generated = st.fixed_dictionaries({}, optional=optional)
    unknown = st.dictionaries(st.text(max_size=10).filter(lambda key: key not in fields), json_values, max_size=2)
    base = st.sampled_from([case.job_input, {}])
    as_object = st.builds(lambda start, fields, extra: start | fields | extra, base, generated, unknown)
    return as_object | json_values  # now and then not even an object


@functools.cache
def fuzz_worker(worker: str, volume: Path) -> Worker:
    case = workers.module(worker, "fixtures").CONTRACT
    settings = Settings(
        volume_root=volume,
        model_id=workers.module(worker, "fixtures").TINY_MODELS[0].model_id,
        output_dir=Path(tempfile.mkdtemp(prefix="fuzz-")),
        locked_parameters=case.fuzz_locks,
    )
    return Worker(workers.adapter_class(worker), settings)


@pytest.mark.parametrize("worker", WORKERS)
def test_every_generated_request_gets_a_result_or_a_clear_error(tiny_volume, worker):
    started = fuzz_worker(worker, tiny_volume.ensure(worker))

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(requests_for(worker))
    def check(raw: Any) -> None:
        result = started.run({"id": "fuzz", "input": raw})
        if "error" in result:
            assert isinstance(result["error"], str) and result["error"]
            assert not result["error"].startswith("internal error"), (raw, result["error"])
        else:
            assert isinstance(result["outputs"], list)

    check()
