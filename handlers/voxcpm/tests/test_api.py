"""The VoxCPM worker end to end: real local RunPod API server over HTTP, SeaweedFS S3.

By default the worker serves plain results; with STREAM_AUDIO=1 it is a generator handler whose
chunks arrive through /stream, the result as the last item.
"""

from __future__ import annotations

import base64
import hashlib
import io

import numpy as np
import pytest
import requests
import soundfile

from handlers.voxcpm.fixtures import build_voxcpm_lora
from handlers.voxcpm.tests.test_schema import prompt_wav as _prompt_wav
from tests.support import stream_job

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def worker(start_worker, s3_server):
    handle = start_worker("voxcpm", **s3_server.env())
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def streaming_worker(start_worker, s3_server):
    handle = start_worker("voxcpm", STREAM_AUDIO="1", **s3_server.env())
    yield handle
    handle.stop()


def _result(worker, job_input: dict) -> dict:
    output = worker.output(job_input)
    assert isinstance(output, dict) and "error" not in output, output  # a plain result, not a list
    return output


def _uploaded(result: dict) -> tuple[np.ndarray, int]:
    response = requests.get(result["outputs"][0]["url"], timeout=30)
    assert response.status_code == 200
    samples, rate = soundfile.read(io.BytesIO(response.content), dtype="int16")
    return samples, rate


def test_zero_shot_to_s3_with_model_info(worker):
    result = _result(
        worker, {"max_len": 24, "target_text": "Hello from the tiny model.", "seed": 1, "inference_timesteps": 4}
    )
    samples, rate = _uploaded(result)
    assert rate == 48000 and len(samples) > 0
    assert result["outputs"][0]["s3_uri"].startswith("s3://audio-results/outputs/voxcpm/")
    assert result["model_info"] == {
        "architecture": "voxcpm2",
        "model": "VoxCPM2",
        "sample_rate": 48000,
        "channels": 1,
        "lora": None,
    }


def test_prompt_audio_and_a_latents_round_trip(worker):
    prompt = _prompt_wav()
    cloned = _result(
        worker, {"max_len": 24, "target_text": "Same voice.", "prompt_audio": prompt, "prompt_text": "a hum", "seed": 4}
    )
    latents = _result(worker, {"task": "encode_latents", "prompt_audio": prompt, "prompt_audio_format": "wav"})
    assert latents["outputs"] == []
    info = latents["details"]["latents"]
    assert (info["dtype"], info["patch_size"], info["feat_dim"], info["sample_rate"]) == ("float32", 4, 64, 16000)
    assert len(base64.b64decode(info["base64"])) == info["frames"] * 4 * 64 * 4
    reused = _result(
        worker,
        {
            "max_len": 24,
            "target_text": "Same voice.",
            "prompt_latents": info["base64"],
            "prompt_text": "a hum",
            "seed": 4,
        },
    )
    # The latents are the very features the audio prompt becomes: same seed, same audio.
    assert np.array_equal(_uploaded(cloned)[0], _uploaded(reused)[0])


def test_a_plain_deployment_refuses_stream_and_names_the_setting(worker):
    error = worker.error({"max_len": 24, "target_text": "x", "stream": True})
    assert error.startswith("stream: this endpoint serves plain results; streaming needs STREAM_AUDIO=1")


def test_streamed_chunks_add_up_to_the_uploaded_file(streaming_worker):
    items = stream_job(
        streaming_worker, {"max_len": 24, "target_text": "Streaming, piece by piece.", "stream": True, "seed": 2}
    )
    *chunks, result = items
    assert len(chunks) >= 2 and all(chunk["format"] == "pcm_s16le" for chunk in chunks)
    assert [chunk["chunk"] for chunk in chunks] == list(range(len(chunks)))
    assert all(len(chunk["audio_base64"]) < 1_000_000 for chunk in chunks)
    streamed = np.concatenate([np.frombuffer(base64.b64decode(c["audio_base64"]), "<i2") for c in chunks])
    uploaded, rate = _uploaded(result)
    assert rate == chunks[0]["sample_rate"] == 48000
    assert len(streamed) == len(uploaded) == sum(chunk["frames"] for chunk in chunks)
    assert np.array_equal(streamed, uploaded)  # the very PCM of the uploaded WAV


def test_mp3_stream_chunks_decode(streaming_worker):
    *chunks, result = stream_job(
        streaming_worker, {"max_len": 24, "target_text": "MP3 pieces.", "stream": True, "stream_format": "mp3"}
    )
    assert "outputs" in result
    for chunk in chunks:
        samples, rate = soundfile.read(io.BytesIO(base64.b64decode(chunk["audio_base64"])))
        assert rate == 48000 and len(samples) >= chunk["frames"]


def test_latents_of_another_shape_are_refused_and_the_worker_keeps_serving(worker):
    error = worker.error({"target_text": "x", "prompt_latents": "AAAAAAAAAAA=", "prompt_text": "y"})
    assert error == (
        "prompt_latents: 2 values is not a whole number of frames of patch_size 4 x feat_dim 64 "
        "(this model's; encode_latents makes them)"
    )
    assert "outputs" in _result(worker, {"max_len": 24, "target_text": "still here", "seed": 1})


def test_voxcpm_15_checkpoint(start_worker, s3_server):
    worker = start_worker("voxcpm", MODEL_ID="tiny-random/VoxCPM1.5", **s3_server.env())
    result = _result(
        worker, {"max_len": 24, "target_text": "One point five.", "prompt_audio": _prompt_wav(), "prompt_text": "a"}
    )
    assert result["model_info"]["model"] == "VoxCPM 1.5"
    assert _uploaded(result)[1] == 44100
    latents = _result(worker, {"task": "encode_latents", "prompt_audio": _prompt_wav()})["details"]["latents"]
    assert latents["sample_rate"] == 44100 and latents["architecture"] == "voxcpm"


@pytest.fixture(scope="module")
def lora_file(tiny_volume, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lora")
    model_dir = tiny_volume.ensure("voxcpm") / "voxcpm" / "tiny-random" / "VoxCPM2"
    return build_voxcpm_lora(model_dir, folder / "speaker.safetensors")


def test_lora_from_a_file_uri_with_its_checksum(start_worker, s3_server, lora_file, tmp_path, worker):
    digest = hashlib.sha256(lora_file.read_bytes()).hexdigest()
    lora_worker = start_worker(
        "voxcpm",
        VOXCPM_LORA_URI=f"file://{lora_file}",
        VOXCPM_LORA_ID="speaker-a",
        VOXCPM_LORA_SHA256=digest,
        VOXCPM_LORA_CACHE_DIR=str(tmp_path / "cache"),
        **s3_server.env(),
    )
    job = {
        "max_len": 24,
        "target_text": "With the adapter.",
        "seed": 9,
        "inference_timesteps": 4,
        "retry_badcase": False,
    }
    adapted = _result(lora_worker, job)
    assert adapted["model_info"]["lora"] == "speaker-a"
    assert (tmp_path / "cache" / "speaker-a" / "lora_weights.safetensors").read_bytes() == lora_file.read_bytes()
    plain = _result(worker, job)
    assert not np.array_equal(_uploaded(adapted)[0], _uploaded(plain)[0])  # the LoRA changed the voice


def test_lora_with_a_wrong_checksum_is_refused(start_worker, s3_server, lora_file, tmp_path):
    lora_worker = start_worker(
        "voxcpm",
        VOXCPM_LORA_URI=f"file://{lora_file}",
        VOXCPM_LORA_SHA256="0" * 64,
        VOXCPM_LORA_CACHE_DIR=str(tmp_path / "cache"),
        **s3_server.env(),
    )
    error = lora_worker.error({"target_text": "x"})
    assert error.startswith(f"VOXCPM_LORA_SHA256: the file at file://{lora_file} has sha256 ")
    assert error.endswith(f"expected {'0' * 64}; not used")
    assert "start-up failed" in lora_worker.logs()  # known before the first job
    assert lora_worker.error({"target_text": "y"}) == error
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.safetensors"))


def test_latents_too_big_for_the_result_go_beside_the_audio(start_worker, s3_server, worker):
    prompt = _prompt_wav(seconds=5.0)  # ~5 s of latents: ~32 KB, ~43 KB as base64
    inline = _result(worker, {"task": "encode_latents", "prompt_audio": prompt})["details"]["latents"]
    small = start_worker("voxcpm", RESULT_MAX_BYTES="20000", **s3_server.env())
    uploaded = _result(small, {"task": "encode_latents", "prompt_audio": prompt})["details"]["latents"]
    assert "base64" not in uploaded and uploaded["s3_uri"].startswith("s3://audio-results/outputs/voxcpm/")
    assert uploaded["s3_uri"].endswith("-latents.f32") and uploaded["bytes"] == len(base64.b64decode(inline["base64"]))
    assert requests.get(uploaded["url"], timeout=30).content == base64.b64decode(inline["base64"])
    assert {k: v for k, v in uploaded.items() if k not in ("s3_uri", "url")} == {
        k: v for k, v in inline.items() if k != "base64"
    }
    small.stop()


def test_latents_too_big_without_a_bucket_fail_with_the_reason(start_worker):
    no_bucket = start_worker("voxcpm", RESULT_MAX_BYTES="20000")
    error = no_bucket.error({"task": "encode_latents", "prompt_audio": _prompt_wav(seconds=5.0)})
    assert error.startswith("details.latents: the result would be ")
    assert "over RESULT_MAX_BYTES=20000 (RunPod drops larger results); configure S3" in error
    no_bucket.stop()
