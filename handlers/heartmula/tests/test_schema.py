"""HeartMuLa requests: what is refused, and how the error reads (pure: no model)."""

import pytest

from handlers.heartmula.config import HeartMuLaWorkerConfig
from handlers.heartmula.schema import HeartMuLaRequest
from shared.schemas import parse_request
from shared.testing import refusal

pytestmark = pytest.mark.unit

BAD_INPUTS = [
    ({"lyrics": "", "tags": "  "}, "lyrics and tags: both are empty; give lyrics, tags or both"),
    ({"tags": "pop", "max_duration_ms": 40}, "max_duration_ms: Input should be greater than or equal to 80"),
    ({"tags": "pop", "max_duration_ms": 700_000}, "max_duration_ms: Input should be less than or equal to 655360"),
    ({"tags": "pop", "max_duration_ms": 1.5}, "max_duration_ms: Input should be a valid integer"),
    ({"tags": "pop", "cfg_scale": 0.5}, "cfg_scale: Input should be greater than or equal to 1"),
    ({"tags": "pop", "temperature": 0}, "temperature: Input should be greater than 0"),
    ({"tags": "pop", "topk": 0}, "topk: Input should be greater than or equal to 1"),
    ({"tags": "pop", "lyrics": "x" * 8001}, "lyrics: String should have at most 8000 characters"),
    ({"tags": "pop", "style": "rock"}, "style: unknown field"),
]


@pytest.mark.parametrize(("raw", "expected"), BAD_INPUTS)
def test_bad_inputs_name_the_field_and_the_rule(raw, expected):
    assert expected in refusal(HeartMuLaRequest, raw)


def test_defaults_are_heartlibs_but_the_length():
    request = parse_request(HeartMuLaRequest, {"tags": "piano"}, 1024)
    assert (request.max_duration_ms, request.temperature, request.topk, request.cfg_scale) == (60_000, 1.0, 50, 1.5)
    assert request.lyrics == ""


def test_the_operator_cap_defaults_to_four_minutes_and_stays_inside_the_context():
    assert HeartMuLaWorkerConfig().max_duration_ms == 240_000
    assert HeartMuLaWorkerConfig(HEARTMULA_MAX_DURATION_MS=655_360).max_duration_ms == 655_360
    with pytest.raises(ValueError, match="less than or equal to 655360"):
        HeartMuLaWorkerConfig(HEARTMULA_MAX_DURATION_MS=700_000)
