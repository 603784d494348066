"""Concurrent jobs: the micro-batcher alone, then workers taking several jobs at once from the SDK's JobScaler.

The platform tests run each worker as RunPod runs it (tests/runpod_platform.py) with MAX_CONCURRENCY > 1:
the SDK takes the queued jobs in one batch take and runs them as concurrent tasks. Each job's audio must
equal the same request run alone; a worker whose adapter batches must also have generated them together.
"""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest
import soundfile

from shared import workers
from shared.adapter import ModelAdapter
from shared.batching import MicroBatcher
from tests.support import wait_for

LSB = 1 / 32768  # one step of 16-bit audio


class Recorder:
    """A batch function over plain numbers: records each batch and checks that no two overlap."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.batches: list[list[int]] = []
        self.running = 0
        self.overlapped = False
        self.fail_with = fail_with
        self._lock = threading.Lock()

    def __call__(self, items: list[int]) -> list[int]:
        with self._lock:
            self.running += 1
            self.overlapped |= self.running > 1
            self.batches.append(list(items))
        time.sleep(0.05)
        with self._lock:
            self.running -= 1
        if self.fail_with is not None:
            raise self.fail_with
        return [item * 10 for item in items]


def _submit_all(batcher: MicroBatcher, jobs: list[tuple[int, object, int]]) -> dict[int, object]:
    """Submit (item, key, outputs) from one thread each, all at once; item -> its outcome or exception."""
    outcomes: dict[int, object] = {}

    def submit(item: int, key: object, outputs: int) -> None:
        try:
            outcomes[item] = batcher.submit(item, key, outputs)
        except Exception as exc:
            outcomes[item] = exc

    threads = [threading.Thread(target=submit, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


@pytest.mark.unit
def test_compatible_jobs_in_the_window_form_one_batch_and_the_others_run_apart():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, window_s=1.0, max_jobs=8, max_outputs=8)
    outcomes = _submit_all(batcher, [(1, "a", 1), (2, "a", 2), (3, "a", 1), (4, "b", 1), (5, None, 1), (6, None, 1)])
    assert outcomes == {item: item * 10 for item in range(1, 7)}  # each job gets its own outcome
    assert sorted(sorted(batch) for batch in recorder.batches) == [[1, 2, 3], [4], [5], [6]]
    assert not recorder.overlapped  # one generation at a time


@pytest.mark.unit
def test_a_batch_stops_at_the_output_and_job_limits():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, window_s=1.0, max_jobs=8, max_outputs=4)
    _submit_all(batcher, [(item, "a", 2) for item in range(1, 7)])
    assert sorted(len(batch) for batch in recorder.batches) == [2, 2, 2]  # 4 outputs each
    recorder = Recorder()
    batcher = MicroBatcher(recorder, window_s=1.0, max_jobs=3, max_outputs=64)
    _submit_all(batcher, [(item, "a", 1) for item in range(1, 7)])
    assert sorted(len(batch) for batch in recorder.batches) == [3, 3]


@pytest.mark.unit
def test_a_failed_batch_call_is_every_member_s_error_and_the_batcher_goes_on():
    recorder = Recorder(fail_with=RuntimeError("out of memory"))
    batcher = MicroBatcher(recorder, window_s=1.0, max_jobs=4, max_outputs=8)
    outcomes = _submit_all(batcher, [(1, "a", 1), (2, "a", 1)])
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes.values())
    recorder.fail_with = None
    assert batcher.submit(3, "a", 1) == 30


@pytest.mark.unit
def test_one_job_at_a_time_does_not_wait_for_the_window():
    batcher = MicroBatcher(Recorder(), window_s=600.0, max_jobs=1, max_outputs=8)
    assert _submit_all(batcher, [(1, "a", 1), (2, "a", 1)]) == {1: 10, 2: 20}  # well within the join timeout


def _batches(worker: str) -> bool:
    return workers.adapter_class(worker).batch_key.__func__ is not ModelAdapter.batch_key.__func__


def _audio(posted, handle) -> list[np.ndarray]:
    body = posted.body
    assert "output" in body and "outputs" in body["output"], body
    return [soundfile.read(handle.output_file(output["path"]))[0] for output in body["output"]["outputs"]]


@pytest.mark.integration
@pytest.mark.parametrize("worker", workers.worker_names())
def test_concurrent_jobs_each_equal_the_same_request_run_alone(start_on_platform, worker):
    platform, handle = start_on_platform(worker, MAX_CONCURRENCY="4", BATCH_WINDOW_MS="1000")
    case = workers.module(worker, "fixtures").CONTRACT
    inputs = [case.job_input | {"seed": seed} for seed in (11, 12, 13, 14)]
    together = platform.submit_together(inputs)
    posted = [platform.result(job) for job in together]
    alone = [platform.result(platform.submit(job_input)) for job_input in inputs]
    for job, one, other in zip(together, posted, alone, strict=True):
        for concurrent, single in zip(_audio(one, handle), _audio(other, handle), strict=True):
            assert concurrent.shape == single.shape
            # The same tokens; the codec's convolutions may round one step apart at another batch size. A tiny
            # random model may end its audio at once (Higgs' seed 14 does): nothing to compare then but the shape.
            assert np.abs(concurrent - single).max(initial=0.0) <= 2 * LSB, job
        assert "batch" not in other.body["output"]
    batches = [one.body["output"].get("batch") for one in posted]
    outputs = 4 * case.output_count
    if _batches(worker):
        assert batches == [{"jobs": 4, "outputs": outputs}] * 4, batches
        for job in together:  # each job of the batch reports its own progress
            assert platform.state.progress.get(job), f"{job}: no progress reached the platform"
    else:
        assert batches == [None] * 4
    print(f"{worker}: 4 concurrent jobs, batches {batches}")


@pytest.mark.integration
@pytest.mark.parametrize("worker", [worker for worker in workers.worker_names() if _batches(worker)])
def test_a_job_cancelled_in_a_batch_stops_alone(start_on_platform, worker):
    platform, handle = start_on_platform(worker, MAX_CONCURRENCY="2", BATCH_WINDOW_MS="5000")
    case = workers.module(worker, "fixtures").CONTRACT
    cancelled, kept = platform.submit_together([case.long_job_input | {"seed": seed} for seed in (1, 2)])
    wait_for(lambda: f"job {kept} | generation started (a batch of 2 jobs)" in handle.logs(), "the batch", 60)
    time.sleep(1.0)
    platform.stop(cancelled)
    result = platform.result(kept, timeout=300)
    assert result.body["output"]["batch"] == {"jobs": 2, "outputs": 2}
    assert len(_audio(result, handle)) == 1
    logs = handle.logs()
    stopped = re.search(rf"job {cancelled} \| job stopped: (\d+) step\(s\) ran, (\d+) after the cancel", logs)
    assert stopped and int(stopped.group(2)) <= 2, logs[-3000:]
    kept_steps = re.search(rf"job {kept} \| generation ended after (\d+) step", logs)
    assert kept_steps and int(kept_steps.group(1)) > int(stopped.group(1))  # the other job ran on
    assert cancelled not in platform.state.results
