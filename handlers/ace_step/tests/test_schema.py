"""ACE-Step requests and the endpoint's task list (pure: no model)."""

import base64
import io

import numpy as np
import pytest
import soundfile

from handlers.ace_step.adapter import AceStep
from handlers.ace_step.config import AceStepConfig
from handlers.ace_step.schema import AceStepRequest
from shared.errors import InputError, SettingsError
from shared.schemas import parse_request
from shared.settings import read_settings
from shared.testing import refusal

pytestmark = pytest.mark.unit

CAP = 20 * 1024 * 1024


def stem(seconds: float = 1.0, rate: int = 16000) -> str:
    buffer = io.BytesIO()
    soundfile.write(buffer, 0.2 * np.sin(np.arange(int(seconds * rate)) / 9.0), rate, format="WAV")
    return base64.b64encode(buffer.getvalue()).decode()


BAD_INPUT = [
    ({"task": "lego", "track_type": "drums", "bpm": 120}, "audio: task 'lego' needs source audio"),
    ({"task": "lego", "audio": stem(), "track_type": "flute", "bpm": 120},
     "track_type: Input should be 'vocals', 'backing_vocals' or 'drums'"),
    ({"task": "lego", "audio": stem(), "track_type": "drums", "bpm": 400},
     "bpm: Input should be less than or equal to 300"),
    ({"task": "lego", "audio": stem(), "track_type": "drums", "bpm": 120,
      "repainting_start": 2.0, "repainting_end": 1.0}, "repainting_end: must be after repainting_start (2 s)"),
    ({"task": "lego", "audio": "QUJD" * 7_500_000, "track_type": "drums", "bpm": 120}, "over the 20971520-byte cap"),
    ({"caption": "x", "audio": stem()}, "audio: text2music does not take source audio"),
    ({"task": "lego", "audio": stem(), "track_type": "drums"}, "bpm: required for lego"),
    ({"audio_duration": 10}, "caption: required for text2music"),
    ({"task": "repaint", "audio": stem(), "repainting_start": 0.5}, "repainting_start and repainting_end: required"),
    ({"task": "cover", "audio": stem(), "track_type": "drums"}, "track_type: only for lego and extract, not 'cover'"),
    ({"caption": "x", "key_scale": "H minor"}, "key_scale: String should match pattern"),
    ({"caption": "x", "audio_duration": 601}, "audio_duration: Input should be less than or equal to 600"),
    ({"task": "complete", "complete_with": ["drums"]}, "audio: task 'complete' needs source audio"),
    ({"task": "cover", "audio": stem(), "complete_with": ["drums"]}, "complete_with: only for complete, not 'cover'"),
    ({"task": "complete", "audio": stem(), "complete_with": ["kazoo"]}, "complete_with.0: Input should be 'vocals'"),
    ({"task": "complete", "audio": stem(), "complete_with": []}, "complete_with: List should have at least 1 item"),
    ({"caption": "x", "lora_uri": "https://x/l.safetensors"}, "lora_uri: unknown field"),
]  # fmt: skip


@pytest.mark.parametrize(("job_input", "expected"), BAD_INPUT, ids=[str(i) for i in range(len(BAD_INPUT))])
def test_bad_input_is_a_clear_error(job_input, expected):
    assert expected in refusal(AceStepRequest, job_input, CAP)


def test_the_endpoint_task_list_is_checked_before_any_model_loads(monkeypatch):
    monkeypatch.setenv("ACE_STEP_TASKS", " text2music , lego ")
    config = read_settings(AceStepConfig)
    assert config.tasks == ("text2music", "lego")
    lego = parse_request(AceStepRequest, {"task": "lego", "audio": stem(), "track_type": "drums", "bpm": 90}, CAP)
    AceStep.check_request(lego, config)
    cover = parse_request(AceStepRequest, {"task": "cover", "audio": stem()}, CAP)
    with pytest.raises(InputError, match=r"task: 'cover' is disabled on this endpoint \(allowed: text2music, lego\)"):
        AceStep.check_request(cover, config)
    monkeypatch.setenv("ACE_STEP_TASKS", ",")
    with pytest.raises(SettingsError, match="ACE_STEP_TASKS: Tuple should have at least 1 item"):
        read_settings(AceStepConfig)
