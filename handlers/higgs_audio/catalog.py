"""Higgs Audio V2 on the network volume: the LM and its audio tokenizer side by side, and voice presets."""

from handlers.higgs_audio import convert  # light: the converters import torch and transformers when they run
from shared.volume import ForeignFormat, VolumeCatalog

TOKENIZER_NAME = "higgs-audio-v2-tokenizer"  # found beside the LM, under the LM's org
TOKENIZER_FILES = ("config.json", "preprocessor_config.json")

# Boson AI's own layouts (boson-multimodal's; bosonai's repositories until their 2026-04 switch to transformers'
# layout: LM revision 10840182ca4ad5d9d9113b60b9bb3c1ef1ba3f84, tokenizer 9d4988fbd4ad07b4cac3a5fa462741a41810dbec),
# converted by the populator (handlers/higgs_audio/convert.py).
FORMATS = (
    ForeignFormat(convert.LM_FORMAT, convert.is_boson_lm, convert.convert_lm),
    ForeignFormat(convert.AUDIO_TOKENIZER_FORMAT, convert.is_boson_audio_tokenizer, convert.convert_audio_tokenizer),
)

CATALOG = VolumeCatalog(
    worker="higgs_audio",
    # transformers' converted copies of Boson AI's checkpoint (the ones its documentation and tests load). Boson's own
    # repositories now publish the same layout on main (bosonai/higgs-tts-2-3b-base + bosonai/higgs-audio-v2-tokenizer,
    # per third-party reports: README.md); their older revisions, in Boson's format, are converted on populate.
    default_model_id="eustlb/higgs-audio-v2-generation-3B-base",
    repositories=("eustlb/higgs-audio-v2-generation-3B-base", f"eustlb/{TOKENIZER_NAME}"),
    required_files=("config.json", "tokenizer.json", "tokenizer_config.json"),
    companion_folders=("voices",),
    companion_models=(f"*/{TOKENIZER_NAME}",),
    formats=FORMATS,
    # bosonai renamed the LM's repository (the hub redirects the old name); a folder or cache under either serves both.
    renamed=(("bosonai/higgs-tts-2-3b-base", "bosonai/higgs-audio-v2-generation-3B-base"),),
)
