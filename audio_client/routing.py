"""Where each worker runs: a RunPod endpoint id, or the URL of a local `--rp_serve_api` server.

Precedence, highest first: the variable AUDIO_CLIENT_<WORKER> (an endpoint id, or an http(s) URL), then
the config file: --config, else $AUDIO_CLIENT_CONFIG, else ./audio-client.toml, else
~/.config/audio-client/config.toml. The file maps worker names to targets:

    [workers.musicgen]
    endpoint = "abc123xyz"            # RunPod endpoint id; the API key comes from RUNPOD_API_KEY

    [workers.voxcpm]
    url = "http://127.0.0.1:8000"     # a local server: python -m handlers.voxcpm --rp_serve_api
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CONFIG_VARIABLE = "AUDIO_CLIENT_CONFIG"
UI_TOKEN_VARIABLE = "AUDIO_CLIENT_UI_TOKEN"  # the page's token (audio_client/ui.py), not a worker's target
# RunPod's job API; another base (a test double of the platform) with AUDIO_CLIENT_RUNPOD_URL.
RUNPOD_URL = "https://api.runpod.ai/v2"


class RoutingError(Exception):
    """A worker with no target, or a config file that cannot be read: the message says how to fix it."""


@dataclass(frozen=True)
class Route:
    worker: str
    endpoint_id: str | None = None  # a RunPod endpoint
    url: str | None = None  # a local --rp_serve_api server

    @classmethod
    def parse(cls, worker: str, value: str, where: str) -> Route:
        value = value.strip()
        if value.startswith(("http://", "https://")):
            return cls(worker, url=value.rstrip("/"))
        if not value or "/" in value or " " in value:
            raise RoutingError(f"{where}: {value!r} is neither a RunPod endpoint id nor an http(s) URL")
        return cls(worker, endpoint_id=value)


def variable(worker: str) -> str:
    return f"AUDIO_CLIENT_{worker.upper()}"


def config_path(explicit: Path | None, environ: Mapping[str, str]) -> Path | None:
    if explicit is not None:
        return explicit
    if environ.get(CONFIG_VARIABLE):
        return Path(environ[CONFIG_VARIABLE])
    for candidate in (Path("audio-client.toml"), Path.home() / ".config" / "audio-client" / "config.toml"):
        if candidate.is_file():
            return candidate
    return None


def load_routes(config: Path | None = None, environ: Mapping[str, str] = os.environ) -> dict[str, Route]:
    """Every worker the config file and the environment name, the environment winning."""
    routes: dict[str, Route] = {}
    path = config_path(config, environ)
    if path is not None:
        try:
            table = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise RoutingError(f"config file {path}: {exc}") from None
        for worker, target in table.get("workers", {}).items():
            where = f"{path} [workers.{worker}]"
            if not isinstance(target, dict) or len({"endpoint", "url"} & target.keys()) != 1:
                raise RoutingError(f'{where}: give exactly one of endpoint = "<id>" or url = "http://..."')
            routes[worker] = Route.parse(worker, str(target.get("endpoint") or target.get("url")), where)
    prefix = "AUDIO_CLIENT_"
    for name, value in environ.items():
        if name.startswith(prefix) and name not in (CONFIG_VARIABLE, UI_TOKEN_VARIABLE, "AUDIO_CLIENT_RUNPOD_URL"):
            worker = name.removeprefix(prefix).lower()
            routes[worker] = Route.parse(worker, value, name)
    return routes


def route_for(worker: str, routes: Mapping[str, Route]) -> Route:
    if worker not in routes:
        raise RoutingError(
            f"no target for {worker!r}: set {variable(worker)}=<endpoint id or http://host:port>, or add "
            f"[workers.{worker}] to the config file (--config, ${CONFIG_VARIABLE}, ./audio-client.toml)"
        )
    return routes[worker]
