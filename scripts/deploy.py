"""Create or update a worker's RunPod template and serverless endpoint from its spec, deploy/<worker>.json.

    python scripts/deploy.py <worker> --image REGISTRY/NAME:TAG [--network-volume ID] [--data-center ID ...]
                             [--name NAME] [--env KEY=VALUE ...] [--dry-run]

Through RunPod's REST API v2 (https://api.runpod.io/v2, an API key in RUNPOD_API_KEY), as its reference describes
it (runpod/docs a900806e253c4f8c16da27d1a4370e72456da4cb, api-reference-v2/openapi.json and migrate-from-v1.mdx;
REST API v1 at rest.runpod.io/v1 was retired on 2026-11-15):
- the template (`POST /v2/templates`, or `PATCH /v2/templates/{id}` when one of that name exists): the image, the
  container disk, the environment (the spec's, then the spec's operator variables set in this shell, then --env),
  allowedCudaVersions, serverless;
- the endpoint (`POST /v2/serverless`, or `PATCH /v2/serverless/{id}` when one of that name exists): a queue
  endpoint on that template (re-applied on update: an endpoint keeps no link to its template), its GPU pools,
  gpu.minCudaVersion 13.0, workers (min, max, idleTimeout), the execution timeout, FlashBoot, and the network volume.

The endpoint's Model setting (RunPod's model cache) has no field in the REST API v2 reference: for a worker that
serves from it, set it in the console afterwards (the command says which repository). Names default to
`<worker>` for the endpoint and `<worker>-worker` for the template. Tested against a local double of the API
(tests/test_deploy.py), not against RunPod itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared import workers  # noqa: E402

API_URL = "https://api.runpod.io"
QUEUE_DELAY_SECONDS = 4  # the scaler RunPod's console starts queue endpoints with


class ApiError(Exception):
    pass


class RestApi:
    """The few calls of RunPod's REST API v2 this needs; errors come back in RFC 9457's problem format."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                problem = json.loads(exc.read())
                detail = "; ".join([str(problem.get("detail", "")), *problem.get("errors", [])])
                message = f"{problem.get('title', exc.reason)}: {detail}"
            except ValueError:
                message = str(exc.reason)
            raise ApiError(f"{method} {path}: HTTP {exc.code} {message}") from None
        except urllib.error.URLError as exc:
            raise ApiError(f"{method} {path}: {exc.reason}") from None

    def find(self, collection: str, key: str, name: str) -> dict[str, Any] | None:
        """The resource of that name in a wrapped v2 list (`{"templates": [...]}`), if any."""
        found = [item for item in self.call("GET", f"/v2/{collection}")[key] if item.get("name") == name]
        if len(found) > 1:
            raise ApiError(f"{len(found)} {collection} are named {name!r}: rename or delete all but one")
        return found[0] if found else None


def load_spec(worker: str) -> dict[str, Any]:
    return json.loads((REPO / "deploy" / f"{worker}.json").read_text())


def environment(spec: dict[str, Any], extra: list[str], shell: dict[str, str]) -> dict[str, str]:
    env = dict(spec["env"])
    env.update({name: shell[name] for name in spec["operator_env"] if shell.get(name)})
    for item in extra:
        name, separator, value = item.partition("=")
        if not separator or not name:
            raise ValueError(f"--env {item!r}: give KEY=VALUE")
        env[name] = value
    return env


def template_body(spec: dict[str, Any], name: str, image: str, env: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "disk": spec["container_disk_gb"],
        "env": env,
        "allowedCudaVersions": spec["cuda"]["allowed"],
        "serverless": True,
        "startSsh": False,
        "startJupyter": False,
    }


def endpoint_body(
    spec: dict[str, Any], name: str, template_id: str, volume: str | None, data_centers: list[str]
) -> dict[str, Any]:
    return {
        "name": name,
        "templateId": template_id,
        # A floor, and an explicit empty set: it clears a set the endpoint may carry (the two are exclusive).
        "gpu": {
            "pools": spec["gpu"]["pools"],
            "count": spec["gpu"]["count"],
            "minCudaVersion": spec["cuda"]["min"],
            "allowedCudaVersions": [],
        },
        "workers": {
            "min": spec["workers"]["min"],
            "max": spec["workers"]["max"],
            "idleTimeout": spec["idle_timeout_s"],
        },
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": QUEUE_DELAY_SECONDS},
        "timeout": spec["execution_timeout_s"] * 1000,
        "flashboot": "FLASHBOOT" if spec.get("flashboot", True) else "OFF",
        "networkVolumes": [volume] if volume else [],
        "dataCenterIds": data_centers,
    }


def deploy(api: RestApi, spec: dict[str, Any], args: argparse.Namespace, shell: dict[str, str]) -> dict[str, Any]:
    """Create or update the template, then the endpoint; returns the endpoint as the API answered."""
    template_name = args.template_name or f"{spec['worker']}-worker"
    endpoint_name = args.name or spec["worker"]
    template = template_body(spec, template_name, args.image, environment(spec, args.env, shell))
    existing = api.find("templates", "templates", template_name)
    if existing:
        update = {key: value for key, value in template.items() if key != "name"}
        template_id = api.call("PATCH", f"/v2/templates/{existing['id']}", update)["id"]
        print(f"template {template_name}: updated ({template_id})")
    else:
        template_id = api.call("POST", "/v2/templates", template)["id"]
        print(f"template {template_name}: created ({template_id})")
    body = endpoint_body(spec, endpoint_name, template_id, args.network_volume, args.data_center)
    existing = api.find("serverless", "endpoints", endpoint_name)
    if existing:
        endpoint = api.call("PATCH", f"/v2/serverless/{existing['id']}", {k: v for k, v in body.items() if k != "name"})
        print(f"endpoint {endpoint_name}: updated ({endpoint['id']})")
    else:
        endpoint = api.call("POST", "/v2/serverless", body | {"type": "QUEUE"})
        print(f"endpoint {endpoint_name}: created ({endpoint['id']})")
    return endpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("worker", choices=workers.worker_names())
    parser.add_argument("--image", required=True, help="the pushed image, e.g. ghcr.io/me/<worker>-worker:1.0.0")
    parser.add_argument("--name", help="the endpoint's name (default: the worker's)")
    parser.add_argument("--template-name", help="the template's name (default: <worker>-worker)")
    parser.add_argument("--network-volume", help="a network volume's id (pins the endpoint to its data centre)")
    parser.add_argument("--data-center", action="append", default=[], help="a data centre id (repeatable)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="a variable (repeatable)")
    parser.add_argument("--api-url", default=os.environ.get("RUNPOD_REST_URL", API_URL), help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true", help="print the request bodies, send nothing")
    args = parser.parse_args(argv)
    spec = load_spec(args.worker)
    if spec["volume"] and not args.network_volume:
        print(
            f"{args.worker} needs a network volume ({spec['volume']['why']}): create one, fill it from a pod with "
            f"`{spec['volume']['populate']}`, then pass --network-volume <its id>",
            file=sys.stderr,
        )
        return 2
    if args.dry_run:
        template = template_body(spec, args.template_name or f"{args.worker}-worker", args.image, spec["env"])
        endpoint = endpoint_body(spec, args.name or args.worker, "<template id>", args.network_volume, args.data_center)
        print(json.dumps({"template": template, "endpoint": endpoint | {"type": "QUEUE"}}, indent=2))
        return 0
    api_key = os.environ.get("RUNPOD_API_KEY", "")
    if not api_key:
        print("set RUNPOD_API_KEY (a RunPod API key with write access)", file=sys.stderr)
        return 2
    try:
        endpoint = deploy(RestApi(args.api_url, api_key), spec, args, dict(os.environ))
    except (ApiError, ValueError) as exc:
        print(f"deploy failed: {exc}", file=sys.stderr)
        return 1
    if spec["model_cache"]:
        print(
            f"now set the endpoint's Model (console: Manage, Edit Endpoint, Model) to {spec['model_cache']['model']}: "
            "the REST API v2 has no field for RunPod's model cache"
        )
    print(f"requests: https://api.runpod.ai/v2/{endpoint['id']}/runsync")
    return 0


if __name__ == "__main__":
    sys.exit(main())
