"""Higgs Audio V2 on the network volume: the LM and its audio tokenizer side by side, and voice presets."""

from shared.volume import VolumeCatalog

TOKENIZER_NAME = "higgs-audio-v2-tokenizer"  # found beside the LM, under the LM's org
TOKENIZER_FILES = ("config.json", "preprocessor_config.json")

CATALOG = VolumeCatalog(
    worker="higgs_audio",
    # transformers' converted copies of Boson AI's checkpoint (the ones its documentation loads): bosonai's own
    # repositories are in Boson's format (model_type higgs_audio, the tokenizer's model.pth), which the native
    # classes do not read.
    default_model_id="eustlb/higgs-audio-v2-generation-3B-base",
    repositories=("eustlb/higgs-audio-v2-generation-3B-base", f"eustlb/{TOKENIZER_NAME}"),
    required_files=("config.json", "tokenizer.json", "tokenizer_config.json"),
    companion_folders=("voices",),
    companion_models=(f"*/{TOKENIZER_NAME}",),
)
