"""VoxCPM on the network volume: voxcpm/<org>/<name>, the layout the voxcpm package loads."""

from shared.volume import VolumeCatalog

CATALOG = VolumeCatalog(
    worker="voxcpm",
    default_model_id="openbmb/VoxCPM2",  # or openbmb/VoxCPM1.5: the config's "architecture" says which
    repositories=("openbmb/VoxCPM2",),
    # openbmb ships the VAE as audiovae.pth (a pickled state dict); the library reads either.
    required_files=("config.json", ("audiovae.safetensors", "audiovae.pth"), "tokenizer.json", "tokenizer_config.json"),
)
