"""DiffSinger on the network volume: voicebanks as users unzip them, and shared vocoders.

Banks and vocoders come as zip files (OpenUtau's packages), not hub repositories: the populator unpacks
one (`--from FILE_OR_URL`) and `install` puts each bank or vocoder it holds where the worker reads it,
then reads the bank as the worker will. A vocoder is named as OpenUtau names an installed dependency
package (PackageManager.cs): by its oudep.yaml's `id` (older packages: `name`), which is the folder a bank's
`vocoder:` names; else by vocoder.yaml's `name`, else by its folder.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from shared.volume import VolumeCatalog

WORKER = "diffsinger"
# A name read from an archive's YAML becomes a folder on the volume: one plain path component, nothing that
# climbs out of vocoders/ (`..`) or hides (a leading dot).
FOLDER_NAME = re.compile(r"(?!.*\.\.)[A-Za-z0-9_-][A-Za-z0-9._-]*")


def _outermost(paths: list[Path]) -> list[Path]:
    """Folders holding the marker file, leaving out those inside another (a bank's own dsvocoder/, dsdur/)."""
    folders = sorted({path.parent for path in paths}, key=lambda folder: len(folder.parts))
    kept: list[Path] = []
    for folder in folders:
        if not any(folder.is_relative_to(outer) for outer in kept):
            kept.append(folder)
    return kept


def install(unpacked: Path, volume_root: Path, name: str | None) -> list[Path]:
    from handlers.diffsinger.voicebank import load_voicebank  # reads YAML and tables only: no onnxruntime

    banks = _outermost(list(unpacked.rglob("dsconfig.yaml")))
    vocoders = [folder for folder in _outermost(list(unpacked.rglob("vocoder.yaml"))) if not any(
        folder.is_relative_to(bank) for bank in banks
    )]  # fmt: skip
    if not banks and not vocoders:
        raise ValueError("the archive holds no voicebank (dsconfig.yaml) and no vocoder (vocoder.yaml)")
    if name is not None and len(banks) + len(vocoders) != 1:
        raise ValueError("--name: the archive holds several banks or vocoders; install it without --name")
    root = volume_root / WORKER
    installed = []
    names = [name or _vocoder_name(vocoder) for vocoder in vocoders]  # every name checked before anything moves
    for vocoder, vocoder_name in zip(vocoders, names, strict=True):
        installed.append(_move(vocoder, root / "vocoders" / vocoder_name))
    for bank in banks:
        installed.append(_move(bank, root / "voicebanks" / (name or bank.name)))
        load_voicebank(installed[-1], root / "vocoders")  # the worker's own reading, now: not at its start
    return installed


def _vocoder_name(folder: Path) -> str:
    """oudep.yaml's id (or its older name) beside vocoder.yaml, else vocoder.yaml's name, else the folder's."""
    for file, keys in (("oudep.yaml", ("id", "name")), ("vocoder.yaml", ("name",))):
        path = folder / file
        if not path.is_file():
            continue
        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"{file}: not readable YAML ({exc})") from exc
        if not isinstance(config, dict):
            raise ValueError(f"{file}: expected a mapping of keys at the top level")
        for key in keys:
            if config.get(key):
                value = str(config[key])
                if not FOLDER_NAME.fullmatch(value):
                    raise ValueError(
                        f"{file} {key}: must be one folder name of letters, digits, '.', '_' and '-', "
                        f"without '..' (got {value!r})"
                    )
                return value
    return folder.name


def _move(source: Path, target: Path) -> Path:
    if target.exists():
        raise ValueError(f"{target} already exists: remove it first, or install under another --name")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(source, target)
    return target


CATALOG = VolumeCatalog(
    worker=WORKER,
    default_model_id="default",  # MODEL_ID names the bank: diffsinger/voicebanks/<MODEL_ID>
    repositories=(),  # banks come as zip files (OpenUtau voicebanks), not hub repositories
    required_files=("dsconfig.yaml",),
    weight_folders=(),  # ONNX graphs, named by the dsconfigs and checked when the bank is read
    companion_folders=("vocoders",),
    models_folder="voicebanks",
    install=install,
)
