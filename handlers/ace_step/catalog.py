"""ACE-Step 1.5 on the network volume: ace_step/<org>/<name>, diffusers' pipeline layout.

The XL checkpoints are published in that layout (ACE-Step/acestep-v15-xl-{base,sft,turbo}-diffusers). The 2B
ones are published in ACE-Step's own layout, which the populator gathers and converts (convert.py):

    ACE-Step/acestep-v15-base, ACE-Step/acestep-v15-sft   the DiT (its repository is the DiT folder), with vae/
                                                          and Qwen3-Embedding-0.6B/ from ACE-Step/Ace-Step1.5
    ACE-Step/Ace-Step1.5                                  the turbo: acestep-v15-turbo/, vae/,
                                                          Qwen3-Embedding-0.6B/ (its 5 Hz language models,
                                                          which the worker does not run, are not fetched)
"""

from pathlib import Path

from shared.volume import ForeignFormat, RepoPiece, VolumeCatalog

_COMPONENTS = ("vae", "text_encoder", "transformer", "condition_encoder")
MAIN_REPOSITORY = "ACE-Step/Ace-Step1.5"  # the turbo DiT, the VAE and the text encoder, in ACE-Step's layout
SHARED_FOLDERS = ("vae/*", "Qwen3-Embedding-0.6B/*")
TURBO_FOLDER = "acestep-v15-turbo"
# ACE-Step's DiT repositories (each repository is one DiT folder), by the folder name ACE-Step's own downloader
# gives them (acestep/model_downloader.py).
DIT_REPOSITORIES = {
    "ACE-Step/acestep-v15-base": "acestep-v15-base",
    "ACE-Step/acestep-v15-sft": "acestep-v15-sft",
}


def pieces(model_id: str) -> tuple[RepoPiece, ...]:
    """The repositories a model folder is gathered from: ACE-Step's layout for its 2B checkpoints, the model's
    own repository alone for any other (the diffusers-format ones)."""
    if model_id == MAIN_REPOSITORY:
        return (RepoPiece(MAIN_REPOSITORY, "", (f"{TURBO_FOLDER}/*", *SHARED_FOLDERS)),)
    if model_id in DIT_REPOSITORIES:
        return (RepoPiece(model_id, DIT_REPOSITORIES[model_id]), RepoPiece(MAIN_REPOSITORY, "", SHARED_FOLDERS))
    return (RepoPiece(model_id),)


def _recognise(folder: Path) -> bool:
    from handlers.ace_step.convert import recognise

    return recognise(folder)


def _convert(source: Path, destination: Path) -> list[str]:
    from handlers.ace_step.convert import convert

    return convert(source, destination)


AUTHORS_LAYOUT = ForeignFormat(
    name="ACE-Step's own layout (a DiT folder with model_type 'acestep', vae/, Qwen3-Embedding-0.6B/)",
    recognise=_recognise,
    convert=_convert,
)

CATALOG = VolumeCatalog(
    worker="ace_step",
    # The 2B base model, converted on populate: lego is a base-model task, and the deployment plan runs the 2B
    # base on a 16 GB T4 (-turbo, -sft and the XL diffusers-format checkpoints are the alternatives).
    default_model_id="ACE-Step/acestep-v15-base",
    repositories=("ACE-Step/acestep-v15-base",),
    required_files=(
        "model_index.json",
        "scheduler/scheduler_config.json",
        "tokenizer/tokenizer.json",
        *(f"{part}/config.json" for part in _COMPONENTS),
    ),
    weight_folders=_COMPONENTS,
    assemble=pieces,
    formats=(AUTHORS_LAYOUT,),
)
