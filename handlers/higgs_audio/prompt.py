"""The text side of a Higgs Audio job: transcript chunks, and the chat-format prompt of each (pure Python).

The prompt follows the model's chat format: a system turn with the scene description, one
user/assistant pair per reference voice (its transcript, then its audio codes), earlier chunks of a
long transcript the same way (so each chunk keeps the voices of the previous ones), then the text to
speak and an open assistant audio turn.
"""

from __future__ import annotations

import re

from handlers.higgs_audio.schema import SPEAKER_TAG, HiggsAudioRequest


def split_transcript(request: HiggsAudioRequest) -> list[str]:
    """The pieces generated one after another: speaker turns, word runs, or the whole transcript."""
    text = request.transcript
    if request.chunk_method == "speaker":
        starts = [match.start() for match in SPEAKER_TAG.finditer(text)]
        if not starts:
            return [text]
        turns = ([text[: starts[0]].strip()] if starts[0] > 0 else []) + [
            text[start:end].strip() for start, end in zip(starts, [*starts[1:], len(text)], strict=True)
        ]
        turns = [turn for turn in turns if turn]
        size = request.chunk_max_num_turns
        return ["\n".join(turns[i : i + size]) for i in range(0, len(turns), size)]
    if request.chunk_method == "word":
        chunks: list[str] = []
        for paragraph in (p for p in re.split(r"\n\s*\n", text) if p.strip()):
            words = paragraph.split()
            size = request.chunk_max_word_num
            chunks += [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
        return chunks
    return [text]


def _turn(role: str, content: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>"


_AUDIO_TURN = _turn("assistant", "<|audio_out_bos|><|AUDIO_OUT|><|audio_eos|>")


def build_prompt(scene_prompt: str | None, context_texts: list[str], text: str) -> str:
    """The chat-format prompt: system (scene), then a user/audio pair per context text, then the open audio turn."""
    system = "Generate audio following instruction."
    if scene_prompt:
        system += f"\n\n<|scene_desc_start|>\n{scene_prompt}\n<|scene_desc_end|>"
    prompt = "<|begin_of_text|>" + _turn("system", system)
    for context_text in context_texts:
        prompt += _turn("user", context_text) + _AUDIO_TURN
    return prompt + _turn("user", text) + "<|start_header_id|>assistant<|end_header_id|>\n\n<|audio_out_bos|>"
