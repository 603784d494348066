"""MusicGen on the network volume: musicgen/<org>/<name>, transformers' layout."""

from shared.volume import VolumeCatalog

CATALOG = VolumeCatalog(
    worker="musicgen",
    default_model_id="facebook/musicgen-small",  # also -medium, -large, -melody, -stereo-*
    repositories=("facebook/musicgen-small",),
    # Published repos ship preprocessor_config.json; transformers 5 saves processor_config.json.
    required_files=(
        "config.json",
        ("preprocessor_config.json", "processor_config.json"),
        "tokenizer.json",
        "tokenizer_config.json",
    ),
    # audiocraft's own checkpoint format, published beside transformers' weights.
    never_loaded=("state_dict.bin", "compression_state_dict.bin"),
)
