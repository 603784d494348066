"""DiffSinger on the network volume: voicebanks as users unzip them, and shared vocoders."""

from shared.volume import VolumeCatalog

CATALOG = VolumeCatalog(
    worker="diffsinger",
    default_model_id="default",  # MODEL_ID names the bank: diffsinger/voicebanks/<MODEL_ID>
    repositories=(),  # banks come as zip files (OpenUtau voicebanks), not hub repositories
    required_files=("dsconfig.yaml",),
    weight_folders=(),  # ONNX graphs, named by the dsconfigs and checked when the bank is read
    companion_folders=("vocoders",),
    models_folder="voicebanks",
)
