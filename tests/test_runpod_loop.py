"""Workers run as RunPod runs them: the SDK's JobScaler against `RunPodPlatform` (tests/runpod_platform.py).

What the local API server cannot show: a job stopped through the stop channel, the results and stream
items as posted (and their sizes), refresh_worker ending the worker.
"""

from __future__ import annotations

import re
import time

import pytest
import soundfile

from shared import workers
from shared.testing import ContractCase
from tests.support import wait_for

pytestmark = pytest.mark.integration

WORKERS = workers.worker_names()
RUNPOD_RUN_LIMIT = 10_000_000  # bytes RunPod keeps of a /run job's output (20 MB for /runsync)


def contract(worker: str) -> ContractCase:
    return workers.module(worker, "fixtures").CONTRACT


def _decoded_outputs(body: dict, handle) -> list:
    outputs = body["output"]["outputs"]
    decoded = []
    for output in outputs:
        samples, rate = soundfile.read(handle.output_file(output["path"]), always_2d=True)
        assert (rate, samples.shape[1]) == (output["sample_rate"], output["channels"])
        assert samples.shape[0] == round(output["duration_seconds"] * rate) > 0
        decoded.append(samples)
    return decoded


def _lines(logs: str, job_id: str, message: str) -> list[int]:
    return [index for index, line in enumerate(logs.splitlines()) if f"job {job_id} | {message}" in line]


@pytest.mark.parametrize("worker", WORKERS)
def test_a_cancelled_job_stops_within_a_step_and_the_next_job_is_whole(start_on_platform, worker):
    platform, handle = start_on_platform(worker)
    case = contract(worker)
    before = platform.submit(case.job_input | {"seed": 2})
    expected = _decoded_outputs(platform.result(before).body, handle)

    long_job = platform.submit(case.long_job_input | {"seed": 1})
    wait_for(lambda: _lines(handle.logs(), long_job, "generation started"), "the long job's start", 60)
    time.sleep(1.0)  # let it generate for a while: a cancel arrives mid-generation
    platform.stop(long_job)
    wait_for(lambda: "cancelled job released the model" in handle.logs(), "the cancelled job's end", 60)

    after = platform.submit(case.job_input | {"seed": 2})
    again = _decoded_outputs(platform.result(after).body, handle)
    assert len(again) == case.output_count
    for one, other in zip(expected, again, strict=True):  # nothing of the cancelled job was left behind
        assert one.shape == other.shape and (one == other).all()
    assert long_job not in platform.state.results  # the SDK posts no result for a stopped job

    logs = handle.logs()
    stopped = re.search(rf"job {long_job} \| job stopped: (\d+) step\(s\) ran, (\d+) after the cancel", logs)
    assert stopped, logs[-3000:]
    steps, after_cancel = int(stopped.group(1)), int(stopped.group(2))
    assert steps > after_cancel and after_cancel <= 2  # counted in model steps, not seconds
    # One generation at a time: the cancelled one ended before the next one started.
    assert _lines(logs, long_job, "generation ended")[0] < _lines(logs, after, "generation started")[0]
    print(f"{worker}: cancelled after {steps} step(s), {after_cancel} after the cancel")


def test_plain_results_are_one_object_and_sized_under_the_limit(start_on_platform):
    worker = WORKERS[0]
    platform, _ = start_on_platform(worker)
    job = platform.submit(contract(worker).job_input | {"seed": 3})
    posted = platform.result(job)
    assert isinstance(posted.body["output"], dict) and "outputs" in posted.body["output"]
    assert "isStream=false" in posted.query and posted.size < RUNPOD_RUN_LIMIT
    assert platform.state.progress[job]  # IN_PROGRESS updates reached the platform


def test_a_bad_variable_is_every_jobs_answer_on_runpod_too(start_on_platform):
    worker = WORKERS[0]
    platform, handle = start_on_platform(worker, DEVICE="tpu")
    first, second = (platform.result(platform.submit(contract(worker).job_input)) for _ in range(2))
    assert first.body == second.body
    assert first.body["error"].startswith("environment variable DEVICE: Input should be 'auto', 'cuda' or 'cpu'")
    assert handle.process.poll() is None  # still serving: no crash loop


def _streaming_worker() -> str:
    """The first worker that streams audio (its adapter says so)."""
    return next(w for w in WORKERS if workers.adapter_class(w).streams)


def test_a_five_minute_streamed_job_stays_under_the_payload_limits(start_on_platform):
    worker = _streaming_worker()
    platform, _ = start_on_platform(worker, STREAM_AUDIO="1")
    seconds = 300.0
    # Five minutes of audio from the worker's long job: 25 latent frames/s, 4 frames per patch.
    job_input = contract(worker).long_job_input | {"stream": True, "seed": 4, "max_len": round(seconds * 25 / 4)}
    job = platform.submit(job_input)
    done = platform.result(job, timeout=600)
    items = platform.state.stream[job]
    *chunks, last = (posted.body["output"] for posted in items)
    result = last
    assert "outputs" in result and result["outputs"][0]["duration_seconds"] >= seconds
    streamed_frames = sum(chunk["frames"] for chunk in chunks)
    assert streamed_frames == round(result["outputs"][0]["duration_seconds"] * chunks[0]["sample_rate"])
    largest = max(posted.size for posted in items)
    assert largest < 1_000_000  # RunPod takes up to 1 MB per stream item
    assert done.body == {"output": []} and done.size < RUNPOD_RUN_LIMIT  # nothing aggregated
    streamed_bytes = sum(posted.size for posted in items)
    print(
        f"{worker}: {len(items)} stream posts, largest {largest} B, {streamed_bytes} B in all; job output {done.size} B"
    )


def test_a_streaming_deployment_answers_plain_requests_with_the_result_item(start_on_platform):
    worker = _streaming_worker()
    platform, _ = start_on_platform(worker, STREAM_AUDIO="1")
    job = platform.submit(contract(worker).job_input | {"seed": 5})
    done = platform.result(job)
    [item] = platform.state.stream[job]
    assert "outputs" in item.body["output"] and done.body == {"output": []}
    refused = platform.submit(contract(worker).job_input | {"cfg_value": 50})
    assert "cfg_value" in platform.result(refused).body["error"]  # an error item fails the job


def test_no_gpu_for_device_cuda_is_every_jobs_answer(start_on_platform):
    worker = WORKERS[0]
    platform, handle = start_on_platform(worker, DEVICE="cuda")
    posted = platform.result(platform.submit(contract(worker).job_input))
    assert posted.body["error"].startswith("DEVICE=cuda: no NVIDIA GPU is visible to this worker")
    assert handle.process.poll() is None


def test_a_result_over_the_limit_is_a_failed_job_with_the_reason_not_a_dropped_one(start_on_platform):
    worker = WORKERS[0]
    platform, _ = start_on_platform(worker, RESULT_MAX_BYTES="10000")
    posted = platform.result(platform.submit(contract(worker).job_input | {"return_base64": True}))
    assert "over RESULT_MAX_BYTES=10000" in posted.body["error"] and posted.size < 10_000
