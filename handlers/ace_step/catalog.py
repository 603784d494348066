"""ACE-Step 1.5 on the network volume: ace_step/<org>/<name>, diffusers' pipeline layout."""

from shared.volume import VolumeCatalog

_COMPONENTS = ("vae", "text_encoder", "transformer", "condition_encoder")

CATALOG = VolumeCatalog(
    worker="ace_step",
    # The base model: lego is a base-model task (-turbo- and -xl- variants exist).
    default_model_id="ACE-Step/acestep-v15-base-diffusers",
    repositories=("ACE-Step/acestep-v15-base-diffusers",),
    required_files=(
        "model_index.json",
        "scheduler/scheduler_config.json",
        "tokenizer/tokenizer.json",
        *(f"{part}/config.json" for part in _COMPONENTS),
    ),
    weight_folders=_COMPONENTS,
)
