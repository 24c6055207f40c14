"""deploy/kubernetes: every object valid against the Kubernetes schemas (kubernetes-validate,
strict: unknown fields are errors), and the PDP settings mean what the server accepts."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from extauthz.server.config import ServerConfig

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
# The oldest release we promise (native gRPC probes are GA from 1.27) and the newest shipped.
KUBERNETES_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


MANIFESTS = sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def by_kind(kind: str, name: str) -> dict[str, Any]:
    for manifest in MANIFESTS:
        for doc in documents(manifest):
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
    raise KeyError((kind, name))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("manifest", MANIFESTS)
def test_manifest_is_valid_kubernetes(manifest: str, version: str) -> None:
    docs = documents(manifest)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_refuses_a_broken_object() -> None:
    broken = copy.deepcopy(by_kind("Deployment", "contractshield-pdp"))
    broken["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)
    broken = copy.deepcopy(by_kind("Service", "contractshield-pdp"))
    broken["spec"]["clusterIp"] = "None"  # a typo strict mode catches
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_kustomization_lists_the_fleet() -> None:
    (kustomization,) = documents("kustomization.yaml")
    assert set(kustomization["resources"]) == {"pdp.yaml", "redis.yaml"}
    assert all((DEPLOY / r).exists() for r in kustomization["resources"])


def _container_env(deployment: dict[str, Any]) -> dict[str, str]:
    (pdp,) = [
        c
        for c in deployment["spec"]["template"]["spec"]["containers"]
        if c["name"] == "contractshield"
    ]
    env = {}
    for item in pdp["env"]:
        env[item["name"]] = item.get("value", "redis://secret.example:6379/0")  # a secretKeyRef
    return env


def test_pdp_fleet_settings_are_accepted_by_the_server() -> None:
    deployment = by_kind("Deployment", "contractshield-pdp")
    env = _container_env(deployment)
    config = ServerConfig.resolve(environ=env)  # raises InvalidConfig naming the bad setting
    assert config.workers == 2 and config.redis_url  # workers need the shared store
    spec = deployment["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > config.grace_seconds
    (pdp,) = spec["containers"]
    assert pdp["resources"]["limits"]["cpu"] == str(config.workers)  # one core per worker
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = by_kind("Service", "contractshield-pdp")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= labels.items()
    assert (
        by_kind("PodDisruptionBudget", "contractshield-pdp")["spec"]["selector"][
            "matchLabels"
        ].items()
        <= labels.items()
    )
    hpa = by_kind("HorizontalPodAutoscaler", "contractshield-pdp")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert (
        hpa["spec"]["minReplicas"]
        > by_kind("PodDisruptionBudget", "contractshield-pdp")["spec"]["minAvailable"]
    )
    redis = by_kind("Secret", "contractshield-redis")["stringData"]["url"]
    assert ServerConfig.resolve(environ={**env, "REDIS_URL": redis}).redis_url == redis


def test_sidecar_settings_are_accepted_by_the_server() -> None:
    env = _container_env(by_kind("Deployment", "licenses-api"))
    config = ServerConfig.resolve(environ=env)
    assert config.unix_socket == "/var/run/contractshield/extauthz.sock"


SENTINEL = DEPLOY / "sentinel"


def test_sentinel_option_is_valid_kubernetes_and_replaces_the_single_redis() -> None:
    (kustomization,) = [
        d for d in yaml.safe_load_all((SENTINEL / "kustomization.yaml").read_text())
    ]
    assert kustomization["resources"] == ["..", "redis-sentinel.yaml"]
    docs = [d for d in yaml.safe_load_all((SENTINEL / "redis-sentinel.yaml").read_text()) if d]
    for version in KUBERNETES_VERSIONS:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)
    deleted = [
        (d["kind"], d["metadata"]["name"])
        for d in yaml.safe_load_all((SENTINEL / "drop-single-redis.patch.yaml").read_text())
        if d and d.get("$patch") == "delete"
    ]
    assert deleted == [("Deployment", "contractshield-redis"), ("Service", "contractshield-redis")]
    (secret,) = yaml.safe_load_all((SENTINEL / "redis-url.patch.yaml").read_text())
    assert (secret["kind"], secret["metadata"]["name"]) == ("Secret", "contractshield-redis")
    url = secret["stringData"]["url"]
    env = _container_env(by_kind("Deployment", "contractshield-pdp"))
    config = ServerConfig.resolve(environ={**env, "REDIS_URL": url})  # the PDP accepts it
    from extauthz.replay_redis import parse_redis_url

    target = parse_redis_url(config.redis_url or "")
    statefulset = next(d for d in docs if d["kind"] == "StatefulSet")
    service = statefulset["spec"]["serviceName"]
    pods = statefulset["spec"]["replicas"]
    assert target.topology == "sentinel" and target.service == "contractshield"
    assert target.hosts == tuple(
        (f"{statefulset['metadata']['name']}-{i}.{service}", 26379) for i in range(pods)
    )
    script = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["init.sh"]
    assert f"sentinel monitor {target.service} " in script and "replica-announce-ip" in script
    assert target.min_replicas == 1 and pods - 1 >= 2, "a promoted replica keeps one to WAIT for"
