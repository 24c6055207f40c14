"""Workers without processes: sizing, socket names, the replay rule, one merged exposition."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from extauthz._exceptions import InvalidConfig
from extauthz.server.config import ServerConfig
from extauthz.server.metrics import Metrics
from extauthz.server.workers import (
    merge_expositions,
    parse_workers,
    usable_cores,
    worker_socket,
    worker_sockets,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_workers_auto_is_the_usable_cores_and_nonsense_is_refused() -> None:
    assert parse_workers("auto", "WORKERS") == usable_cores() <= (os.cpu_count() or 1)
    assert parse_workers(" 3 ", "WORKERS") == 3
    for bad in ("0", "-1", "many"):
        with pytest.raises(InvalidConfig, match="WORKERS"):
            parse_workers(bad, "WORKERS")


def test_each_worker_has_its_own_socket_beside_the_configured_one() -> None:
    assert worker_socket("/run/cs/extauthz.sock", 1) == "/run/cs/extauthz.1.sock"
    assert worker_sockets("/run/cs/pdp", 2) == ["/run/cs/pdp.0", "/run/cs/pdp.1"]
    assert worker_sockets("/run/cs/pdp.sock", 1) == ["/run/cs/pdp.sock"]


def test_several_workers_need_a_shared_replay_store() -> None:
    env = {"POLICY_PATH": "p.yaml", "WORKERS": "2"}
    with pytest.raises(InvalidConfig, match=r"WORKERS: 2 workers .* set REDIS_URL"):
        ServerConfig.resolve(environ=env)
    config = ServerConfig.resolve(environ={**env, "REDIS_URL": "redis://127.0.0.1:1"})
    assert config.workers == 2
    assert ServerConfig.resolve(environ={"POLICY_PATH": "p.yaml"}).workers == 1


def test_cli_refuses_workers_without_redis_with_the_reason(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "extauthz", "serve", "--policy", "x.yaml", "--workers", "2"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "REDIS_URL"},
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert "in-memory replay store would let a webhook replay through" in result.stderr


def _worker_text(blocks: int, version: str) -> bytes:
    metrics = Metrics()
    for _ in range(blocks):
        metrics.observe_decision("BLOCK", None, 0.0003, "grpc")
    metrics.observe_reload(True)
    metrics.policy_info.info({"version": version, "source": "p.yaml"})
    return metrics.registry_exposition()


def test_merge_sums_counters_keeps_retired_ones_and_labels_gauges_per_worker(
    tmp_path: Path,
) -> None:
    (tmp_path / "worker-0.prom").write_bytes(_worker_text(3, "v2"))
    (tmp_path / "worker-1.prom").write_bytes(_worker_text(4, "v2"))
    (tmp_path / "retired-0-1.prom").write_bytes(_worker_text(5, "v1"))  # worker 0 before a crash
    text = merge_expositions(tmp_path).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    blocks = ("contractshield_decisions_total", (("action", "BLOCK"), ("route", "unmatched")))
    assert samples[blocks] == 12  # 3 + 4, and the 5 of the worker that died
    histogram = ("contractshield_decision_duration_seconds_count", (("transport", "grpc"),))
    assert samples[histogram] == 12
    info = "contractshield_policy_info"
    versions = {dict(k[1]).get("worker"): dict(k[1])["version"] for k in samples if k[0] == info}
    assert versions == {"0": "v2", "1": "v2"}  # the retired worker's gauges are gone
    up = {dict(k[1])["worker"]: v for k, v in samples.items() if k[0] == "contractshield_up"}
    assert up == {"0": 1.0, "1": 1.0}
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: apt-get install prometheus (.ci/run installs it)"
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
