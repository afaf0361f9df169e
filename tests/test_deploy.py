"""The deploy manifests parse, carry a config and a command the CLI accepts, and hold no
secrets; the image is pinned."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from rhcloud.cli import build_parser
from rhcloud.config import config_from_dict

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _docs():
    return {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "job.yaml").read_text())}


def test_job_config_and_command_are_accepted():
    docs = _docs()
    config = config_from_dict(yaml.safe_load(docs["ConfigMap"]["data"]["run.yaml"]))
    assert config.cluster.kind == "gateway" and config.members == "all"
    container = docs["Job"]["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(container["args"])
    assert container["command"] == ["rhcloud"] and args.command == "run"
    mount = container["volumeMounts"][0]["mountPath"]
    assert args.config == Path(mount) / "run.yaml"


def test_credentials_come_from_a_secret():
    docs = _docs()
    env = docs["Job"]["spec"]["template"]["spec"]["containers"][0]["env"]
    token = next(e for e in env if e["name"] == "JUPYTERHUB_API_TOKEN")
    assert "secretKeyRef" in token["valueFrom"] and "value" not in token
    text = (DEPLOY / "job.yaml").read_text()
    assert not re.search(r"(password|token)\s*:\s*[\"']?[A-Za-z0-9+/]{16,}", text)


def test_image_is_pinned():
    first = (DEPLOY / "Dockerfile").read_text().split("FROM ", 1)[1].split()[0]
    assert first.startswith("pangeo/pangeo-notebook:") and not first.endswith(":latest")
    assert re.fullmatch(r"pangeo/pangeo-notebook:\d{4}\.\d{2}\.\d{2}", first)
