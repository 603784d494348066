"""HeartMuLa on the network volume: heartmula/<org>/<name>, each folder in heartlib's checkpoint layout.

    heartmula/HeartMuLa/HeartMuLa-oss-3B-happy-new-year/
        gen_config.json, tokenizer.json      from HeartMuLa/HeartMuLaGen
        HeartMuLa-oss-3B/                    the language model (the folder's name: heartlib's "3B" version)
        HeartCodec-oss/                      the codec published beside it

The folder is named after its language model, so several checkpoints can sit side by side (MODEL_ID picks
one); heartlib itself reads such a folder as `--model_path`.
"""

from shared.volume import RepoPiece, VolumeCatalog

MULA_FOLDER = "HeartMuLa-oss-3B"
CODEC_FOLDER = "HeartCodec-oss"
GEN_REPOSITORY = "HeartMuLa/HeartMuLaGen"
# The codec each language model was released with (heartlib's README); the newest for any other.
_CODECS = {"HeartMuLa/HeartMuLa-oss-3B": "HeartMuLa/HeartCodec-oss"}
_NEWEST_CODEC = "HeartMuLa/HeartCodec-oss-20260123"


def pieces(model_id: str) -> tuple[RepoPiece, ...]:
    return (
        RepoPiece(GEN_REPOSITORY, files=("gen_config.json", "tokenizer.json")),
        RepoPiece(model_id, MULA_FOLDER),
        RepoPiece(_CODECS.get(model_id, _NEWEST_CODEC), CODEC_FOLDER),
    )


CATALOG = VolumeCatalog(
    worker="heartmula",
    # heartlib's recommended pair: this language model and HeartCodec-oss-20260123.
    default_model_id="HeartMuLa/HeartMuLa-oss-3B-happy-new-year",
    repositories=("HeartMuLa/HeartMuLa-oss-3B-happy-new-year",),
    required_files=("gen_config.json", "tokenizer.json", f"{MULA_FOLDER}/config.json", f"{CODEC_FOLDER}/config.json"),
    weight_folders=(MULA_FOLDER, CODEC_FOLDER),
    assemble=pieces,
)
