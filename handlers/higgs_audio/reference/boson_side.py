"""Boson AI's own side of the reference comparison: run with the reference venv's python (boson-multimodal 0.1.1,
transformers 4.46), never with the project's.

    .cache/venv-reference-higgs_audio/bin/python handlers/higgs_audio/reference/boson_side.py OUT_DIR

Builds a tiny random-weight Higgs Audio V2 checkpoint with Boson's own classes (HiggsAudioConfig + HiggsAudioModel,
saved with save_pretrained; HiggsAudioTokenizer, saved as its config.json + model.pth, the layout
bosonai/higgs-audio-v2-tokenizer published before 2026-04), then generates greedily with Boson's serving engine
(HiggsAudioServeEngine) for a fixed prompt, and writes into OUT_DIR:

    lm/          the LM in Boson's format (config.json model_type "higgs_audio", model.safetensors, tokenizer files)
    tokenizer/   the audio tokenizer in Boson's format (config.json, model.pth)
    result.json  the prompt's token ids, the generated audio codes (codebooks x frames, delay pattern undone, as the
                 engine hands them to its audio tokenizer) and the settings used
    waveform.npy what Boson's audio tokenizer decodes those codes to

Boson's tokenizer class loads its HuBERT teacher from the hub (bosonai/hubert_base); offline, a tiny HuBERT of the same
width (768, which Boson's code fixes) stands in, and its weights are saved in model.pth as Boson's are.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SEED = 1234
SCENE = "Audio is recorded from a quiet room."
# The system turn Higgs' examples use, with the scene description; the worker builds the same (prompt.py).
SYSTEM = f"Generate audio following instruction.\n\n<|scene_desc_start|>\n{SCENE}\n<|scene_desc_end|>"
TRANSCRIPT = "The reference, spoken twice over."
MAX_NEW_TOKENS = 64
EOS_BOOST = 1.15
# The Llama-3 special tokens Higgs' prompts use, named as in Boson's tokenizer.json.
SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|audio_out_bos|>",
    "<|reserved_special_token_6|>",
    "<|AUDIO|>",
    "<|AUDIO_OUT|>",
    "<|scene_desc_start|>",
    "<|scene_desc_end|>",
)
RATIOS = [8, 5, 4, 2, 3]  # 24 kHz / 960 = 25 frames per second, as published


def _tiny_hubert():
    from transformers import HubertConfig, HubertModel

    # Boson's tokenizer fixes the teacher's width at 768; the rest is kept small.
    config = HubertConfig(
        hidden_size=768,
        num_hidden_layers=1,
        num_attention_heads=12,
        intermediate_size=64,
        conv_dim=[16] * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=16,
    )
    return HubertModel(config)


def _offline_teacher() -> None:
    """Boson's tokenizer module calls AutoModel.from_pretrained('bosonai/hubert_base'): a tiny HuBERT instead."""
    import boson_multimodal.audio_processing.higgs_audio_tokenizer as module

    class _Teacher:
        @staticmethod
        def from_pretrained(name, **kwargs):
            assert name == "bosonai/hubert_base", name
            return _tiny_hubert()

    module.AutoModel = _Teacher


def _text_tokenizer():
    """A byte-level BPE tokenizer (Llama-3's kind) over the 256 byte symbols, with Higgs' special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    backend = Tokenizer(models.BPE(vocab={symbol: index for index, symbol in enumerate(sorted(alphabet))}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token = "<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>"
    return tokenizer


def build_lm(target: Path) -> None:
    import torch
    from boson_multimodal.model.higgs_audio import HiggsAudioConfig, HiggsAudioModel

    tokenizer = _text_tokenizer()
    token = tokenizer.convert_tokens_to_ids
    hidden, layers = 64, 2
    text_config = {
        "model_type": "llama",
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": hidden // 4,
        "hidden_act": "silu",
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0,
        # As published: Llama-3.2's rope scaling.
        "rope_scaling": {
            "factor": 32.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "bos_token_id": token("<|begin_of_text|>"),
        "eos_token_id": token("<|end_of_text|>"),
        "tie_word_embeddings": True,
    }
    config = HiggsAudioConfig(
        text_config=text_config,
        audio_adapter_type="dual_ffn_fast_forward",
        audio_dual_ffn_layers=list(range(layers)),
        audio_ffn_hidden_size=hidden,
        audio_ffn_intermediate_size=2 * hidden,
        audio_decoder_proj_num_layers=0,
        encode_whisper_embed=False,
        encode_audio_in_tokens=True,
        use_delay_pattern=True,
        skip_audio_tower=True,
        use_audio_out_embed_projector=False,
        use_audio_out_self_attention=0,
        audio_num_codebooks=8,
        audio_codebook_size=1024,
        audio_stream_bos_id=1024,
        audio_stream_eos_id=1025,
        audio_in_token_idx=token("<|AUDIO|>"),
        audio_out_token_idx=token("<|AUDIO_OUT|>"),
        audio_out_bos_token_id=token("<|audio_out_bos|>"),
        audio_eos_token_id=token("<|audio_eos|>"),
        pad_token_id=token("<|end_of_text|>"),
        hidden_size=hidden,
    )
    torch.manual_seed(SEED)
    model = HiggsAudioModel(config)
    with torch.no_grad():  # random weights large enough that greedy decoding does not end at once
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                continue
            parameter.normal_(0.0, 0.2)
        # Each codebook's stream-end row made likelier, so that greedy decoding ends the stream by itself (and the
        # comparison covers the end of the stream as well as its start) within MAX_NEW_TOKENS.
        stride = config.audio_codebook_size + 2
        end_rows = [codebook * stride + config.audio_stream_eos_id for codebook in range(config.audio_num_codebooks)]
        model.audio_decoder_proj.audio_lm_head.weight[end_rows] *= EOS_BOOST
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def build_audio_tokenizer(target: Path) -> None:
    import torch
    from boson_multimodal.audio_processing.higgs_audio_tokenizer import HiggsAudioTokenizer

    # Boson's keys, as bosonai/higgs-audio-v2-tokenizer@9d4988fb's config.json names them; D and codebook_dim small.
    config = {
        "n_filters": 32,
        "D": 16,
        "codebook_dim": 8,
        "target_bandwidths": [0.5, 1, 1.5, 2, 4],
        "ratios": RATIOS,
        "sample_rate": 24000,
        "bins": 1024,
        "n_q": 8,
        "semantic_techer": "hubert_base_general",
    }
    torch.manual_seed(SEED + 1)
    model = HiggsAudioTokenizer(**config, device="cpu")
    with torch.no_grad():  # trained codebooks are spread out; zeros (the initial ones) would decode every code alike
        for layer in model.quantizer.vq.layers:
            layer._codebook.embed.normal_()
            layer._codebook.embed_avg.copy_(layer._codebook.embed)
    target.mkdir(parents=True, exist_ok=True)
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    torch.save(model.state_dict(), target / "model.pth")


def generate(lm: Path, audio_tokenizer: Path) -> tuple[list[int], list[list[int]], object, list[list[int]]]:
    import torch
    from boson_multimodal.data_types import ChatMLSample, Message
    from boson_multimodal.model.higgs_audio.utils import revert_delay_pattern
    from boson_multimodal.serve.serve_engine import HiggsAudioServeEngine

    engine = HiggsAudioServeEngine(str(lm), str(audio_tokenizer), device="cpu", torch_dtype=torch.float32)
    decoded = []
    decode = engine.audio_tokenizer.decode
    engine.audio_tokenizer.decode = lambda codes: decoded.append(codes.clone()) or decode(codes)  # what it decodes
    sample = ChatMLSample(messages=[Message(role="system", content=SYSTEM), Message(role="user", content=TRANSCRIPT)])
    prompt = engine._prepare_inputs(sample, force_audio_gen=True)["input_ids"][0].tolist()
    response = engine.generate(
        sample,
        max_new_tokens=MAX_NEW_TOKENS,
        temperature=0.0,  # greedy: the engine passes do_sample=False
        force_audio_gen=True,
        ras_win_len=None,
        seed=SEED,
    )
    assert len(decoded) == 1, f"expected one audio segment, got {len(decoded)}"
    codes = decoded[0][0]
    raw = torch.as_tensor(response.generated_audio_tokens)
    ended = bool((raw[0] == 1025).any())  # the first codebook reached its stream end by itself
    assert ended, f"the stream did not end within {MAX_NEW_TOKENS} steps: raise EOS_BOOST"
    assert torch.equal(codes, revert_delay_pattern(raw).clip(0, 1023)[:, 1:-1])
    return prompt, codes.tolist(), response.audio, raw.tolist()


def main(out: Path) -> None:
    try:
        import torchaudio  # noqa: F401 (Boson's tokenizer module imports it)
    except OSError as exc:
        raise SystemExit(
            f"torchaudio does not import beside this torch ({exc}); remove its compiled extension: "
            f"rm -f {Path(sys.prefix)}/lib/python3.11/site-packages/torchaudio/lib/*.so"
        ) from None
    import numpy as np
    import torch
    import transformers

    torch.set_num_threads(2)
    _offline_teacher()
    build_lm(out / "lm")
    build_audio_tokenizer(out / "tokenizer")
    prompt, codes, waveform, raw = generate(out / "lm", out / "tokenizer")
    np.save(out / "waveform.npy", np.asarray(waveform, dtype=np.float32))
    result = {
        "prompt_token_ids": prompt,
        "audio_codes": codes,
        "delayed_audio_tokens": raw,
        "scene": SCENE,
        "system": SYSTEM,
        "transcript": TRANSCRIPT,
        "max_new_tokens": MAX_NEW_TOKENS,
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
    }
    (out / "result.json").write_text(json.dumps(result) + "\n")
    print(f"{len(codes)} codebooks x {len(codes[0])} frames")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
