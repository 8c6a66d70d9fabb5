"""The cluster launcher config passes Ray's own validation (as ``ray up`` runs it), and the
KubeRay RayService carries a serveConfigV2 that Serve's schema accepts and that is what
``afisha config`` writes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema.exceptions import ValidationError
from ray.autoscaler._private.commands import _bootstrap_config
from ray.serve.schema import ServeDeploySchema

from cluster import serve_config
from cluster.app import DEPLOYMENTS
from cluster.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _launcher_config() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "ray_cluster.yaml").read_text()))


def test_ray_up_accepts_the_cluster_config() -> None:
    # What `ray up` does before touching a node: defaults, node types, schema validation.
    resolved = _bootstrap_config(_launcher_config(), no_config_cache=True)
    [node_type] = resolved["available_node_types"].values()
    assert node_type["max_workers"] == 2
    workers = " ".join(resolved["worker_start_ray_commands"])
    assert '"afisha_worker"' in workers and "AFISHA_SECRETS_DIR" in workers
    assert "--force" not in workers + " ".join(resolved["head_start_ray_commands"])
    for commands in ("head_start_ray_commands", "worker_start_ray_commands"):
        started = " ".join(resolved[commands])
        for name, value in {**serve_config.SERVE_ENV, **serve_config.NODE_ENV}.items():
            assert f"{name}={value}" in started, (commands, name)


def test_ray_validation_is_not_a_formality() -> None:
    broken = _launcher_config()
    broken["setup_comands"] = ["a typo"]
    with pytest.raises(ValidationError):
        _bootstrap_config(broken, no_config_cache=True)


def _rayservice() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "cluster/kuberay/rayservice.yaml").read_text()))


def test_rayservice_serve_config_validates() -> None:
    service = _rayservice()
    assert service["kind"] == "RayService"
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    schema = ServeDeploySchema.model_validate(config)
    [application] = schema.applications
    assert [d.name for d in application.deployments] == list(DEPLOYMENTS)
    assert application.import_path == serve_config.IMPORT_PATH


def test_rayservice_serve_config_is_the_generated_one(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    """Its settings, read back from its own runtime_env, generate exactly this config."""
    config = yaml.safe_load(_rayservice()["spec"]["serveConfigV2"])
    monkeypatch.chdir(tmp_path)
    for name in list(__import__("os").environ):
        if name.startswith("AFISHA_"):
            monkeypatch.delenv(name)
    for name, value in config["applications"][0]["runtime_env"]["env_vars"].items():
        monkeypatch.setenv(name, value)
    assert serve_config.serve_config(Settings()) == config


def test_rayservice_groups_and_secrets() -> None:
    cluster = _rayservice()["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    [workers] = cluster["workerGroupSpecs"]
    worker = workers["template"]["spec"]["containers"][0]
    for container in (head, worker):
        assert container["envFrom"] == [{"secretRef": {"name": "afisha-secrets"}}]
        token = next(e for e in container["env"] if e["name"] == "RAY_AUTH_TOKEN")
        assert token["valueFrom"]["secretKeyRef"]["name"] == "afisha-ray-token"
        given = {e["name"]: e.get("value") for e in container["env"]}
        for name, value in {**serve_config.SERVE_ENV, **serve_config.NODE_ENV}.items():
            assert given.get(name) == value, name
    resources = yaml.safe_load(yaml.safe_load(workers["rayStartParams"]["resources"]))
    assert resources == {"afisha_worker": 100}
    deployments = {d["name"]: d for d in copy.deepcopy(yaml.safe_load(
        _rayservice()["spec"]["serveConfigV2"]))["applications"][0]["deployments"]}
    assert deployments["PaymentService"]["ray_actor_options"]["resources"] == {
        "afisha_worker": 0.001}
