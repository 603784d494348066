"""Higgs Audio requests, transcript chunking and the prompt format (pure: no model)."""

import pytest

from handlers.higgs_audio.prompt import build_prompt, split_transcript
from handlers.higgs_audio.schema import HiggsAudioRequest
from shared.schemas import AudioLabel, parse_request
from shared.testing import refusal

pytestmark = pytest.mark.unit

CAP = 1_000_000


def _request(**fields) -> HiggsAudioRequest:
    return parse_request(HiggsAudioRequest, fields, CAP)


BAD_INPUTS = [
    ({"transcript": "x", "ref_audio": "../voices/demo_voice"}, ["ref_audio.0", "no paths"]),
    ({"transcript": "   "}, ["transcript: String should have at least 1 character"]),
    ({"transcript": "x", "temperature": 0}, ["temperature: Input should be greater than 0"]),
    ({"transcript": "x", "top_p": 1.5}, ["top_p: Input should be less than or equal to 1"]),
    ({"transcript": "x", "top_k": 0}, ["top_k: Input should be greater than or equal to 1"]),
    ({"transcript": "x", "ref_text": "words"}, ["ref_text: given without ref_audio"]),
    ({"transcript": "x", "ref_audio": "demo_voice", "ref_text": "other"}, ["ref_text.0: voice preset 'demo_voice'"]),
    ({"transcript": "x", "ref_audio": ["demo_voice", "demo_voice"]}, ["ref_audio: 2 voices need [SPEAKER0]"]),
    ({"transcript": "[SPEAKER2] hi", "ref_audio": ["demo_voice", "demo_voice"]}, ["[SPEAKER2] has no ref_audio"]),
    ({"transcript": "x", "chunk_method": "sentence"}, ["chunk_method: Input should be 'speaker' or 'word'"]),
    ({"transcript": "x", "voice": "demo_voice"}, ["voice: unknown field"]),
]


@pytest.mark.parametrize(("job_input", "expected"), BAD_INPUTS, ids=[str(i) for i in range(len(BAD_INPUTS))])
def test_bad_input_is_a_clear_error(job_input, expected):
    error = refusal(HiggsAudioRequest, job_input, CAP)
    assert all(fragment in error for fragment in expected), error


def test_speaker_chunks_group_turns_and_keep_a_preamble():
    transcript = "Narrator intro. [SPEAKER0] One. [SPEAKER1] Two. [SPEAKER0] Three."
    assert split_transcript(_request(transcript=transcript, chunk_method="speaker")) == [
        "Narrator intro.",
        "[SPEAKER0] One.",
        "[SPEAKER1] Two.",
        "[SPEAKER0] Three.",
    ]
    grouped = _request(transcript=transcript, chunk_method="speaker", chunk_max_num_turns=2)
    assert split_transcript(grouped) == ["Narrator intro.\n[SPEAKER0] One.", "[SPEAKER1] Two.\n[SPEAKER0] Three."]


def test_word_chunks_respect_paragraphs():
    transcript = "a b c d e\n\nf g"
    assert split_transcript(_request(transcript=transcript, chunk_method="word", chunk_max_word_num=3)) == [
        "a b c",
        "d e",
        "f g",
    ]
    assert split_transcript(_request(transcript=transcript)) == [transcript]


def test_prompt_format():
    assert build_prompt("Rain outside.", ["Hi."], "Bye.") == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Generate audio following instruction.\n\n<|scene_desc_start|>\nRain outside.\n<|scene_desc_end|><|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n<|audio_out_bos|><|AUDIO_OUT|><|audio_eos|><|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nBye.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n<|audio_out_bos|>"
    )


def test_reference_audio_labels_skip_presets():
    request = _request(transcript="[SPEAKER0] a [SPEAKER1] b", ref_audio=["demo_voice", "QUJDRA" * 20])
    assert list(request.input_audio()) == [AudioLabel("ref_audio", 1)]
