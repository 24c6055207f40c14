"""PolicyHotReloader on its own, with real files and the real policy loader and engine."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from reload_helpers import (
    SCHEMA_V1,
    SCHEMA_V2,
    items_ctx,
    ping_ctx,
    policy_yaml,
    wait_for,
    write_atomic,
)

from extauthz import InvalidPolicy
from extauthz.engine import evaluate
from extauthz.policy.reload import PolicyHotReloader

FAST_MS = 200  # short debounce so the suite stays quick; the default is tested separately


def ping_action(reloader: PolicyHotReloader) -> str:
    return evaluate(reloader.current(), ping_ctx()).action


@pytest.fixture
def policy_file(policy_dir: Path) -> Path:
    path = policy_dir / "policy.yaml"
    path.write_text(policy_yaml(ping_expr="true"))
    return path


def test_a_changed_rule_decides_after_the_default_debounce(
    policy_file: Path,
) -> None:
    reloaded: list[str] = []
    with PolicyHotReloader(policy_file, on_reload=lambda p: reloaded.append(p.version)) as r:
        assert r.debounce_ms == 500
        first = r.current()
        assert ping_action(r) == "ALLOW"

        policy_file.write_text(policy_yaml(ping_expr="false"))
        took = wait_for(lambda: ping_action(r) == "BLOCK")  # printed below, not asserted
        wait_for(lambda: r.stats.reloads == 1)

        second = r.current()
        assert second.version != first.version
        assert second.loaded_at >= first.loaded_at
        assert r.last_reload_at == second.loaded_at
        assert reloaded == [second.version]
        assert r.stats.reloads == 1 and r.stats.failures == 0
    print(f"reload latency (write -> new rule decides): {took * 1000:.0f} ms")


def test_an_invalid_policy_is_refused_then_a_fix_is_applied(
    policy_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[InvalidPolicy] = []
    with PolicyHotReloader(policy_file, debounce_ms=FAST_MS, on_error=errors.append) as r:
        good = r.current()
        caplog.set_level(logging.ERROR, logger="extauthz.reload")

        # A typo'd key inside a route: the loader refuses unknown keys.
        policy_file.write_text(policy_yaml(ping_expr="false").replace("action: block", "acton: x"))
        wait_for(lambda: r.stats.failures == 1)

        assert r.current() is good, "the last good policy must stay active"
        assert ping_action(r) == "ALLOW"
        assert len(errors) == 1 and errors[0].errors
        problem = r.last_problems[0]
        assert problem.file.endswith("policy.yaml")
        assert problem.path.startswith("routes")
        assert problem.reason
        assert r.last_error is not None and "policy.yaml" in r.last_error
        assert r.last_error_at is not None
        logged = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.ERROR]
        assert any("policy.yaml" in m and problem.path in m for m in logged), logged

        policy_file.write_text(policy_yaml(ping_expr="false"))
        wait_for(lambda: r.stats.reloads == 1)
        assert r.current() is not good
        assert ping_action(r) == "BLOCK"
        assert r.last_error is None and r.last_problems == ()
        assert r.stats.reloads == 1 and r.stats.failures == 1


def test_yaml_that_does_not_parse_is_refused_with_the_file_named(policy_file: Path) -> None:
    with PolicyHotReloader(policy_file, debounce_ms=FAST_MS) as r:
        good = r.current()
        policy_file.write_text("routes: [unclosed\n")
        wait_for(lambda: r.stats.failures == 1)
        assert r.current() is good
        assert r.last_problems[0].file.endswith("policy.yaml")


def test_ten_rapid_writes_give_exactly_one_reload(policy_file: Path) -> None:
    with PolicyHotReloader(policy_file, debounce_ms=300) as r:
        for i in range(10):
            policy_file.write_text(policy_yaml(ping_expr="true", marker=f"write {i}"))
            time.sleep(0.01)
        policy_file.write_text(policy_yaml(ping_expr="false", marker="final"))
        wait_for(lambda: r.stats.reloads >= 1)
        time.sleep(1.0)  # several debounce periods: nothing else may happen
        assert r.stats.reloads == 1
        assert r.stats.events >= 10
        assert ping_action(r) == "BLOCK"


def test_atomic_rename_triggers_a_reload(policy_file: Path) -> None:
    with PolicyHotReloader(policy_file, debounce_ms=FAST_MS) as r:
        write_atomic(policy_file, policy_yaml(ping_expr="false"))
        wait_for(lambda: r.stats.reloads == 1)
        assert ping_action(r) == "BLOCK"


def test_delete_then_recreate_triggers_a_reload(policy_file: Path) -> None:
    with PolicyHotReloader(policy_file, debounce_ms=FAST_MS) as r:
        policy_file.unlink()
        time.sleep(0.05)
        policy_file.write_text(policy_yaml(ping_expr="false"))
        wait_for(lambda: r.stats.reloads == 1)
        assert ping_action(r) == "BLOCK"


def test_deleted_policy_keeps_the_old_one_until_it_comes_back(policy_file: Path) -> None:
    with PolicyHotReloader(policy_file, debounce_ms=FAST_MS) as r:
        good = r.current()
        policy_file.unlink()
        wait_for(lambda: r.stats.failures == 1)
        assert r.current() is good and ping_action(r) == "ALLOW"
        assert r.last_error is not None and "policy.yaml" in r.last_error
        policy_file.write_text(policy_yaml(ping_expr="false"))
        wait_for(lambda: ping_action(r) == "BLOCK")
        assert r.last_error is None


def test_a_reader_that_sees_the_new_policy_sees_the_old_error_cleared(policy_file: Path) -> None:
    """The policy swap is the last step of a reload: a reader (``/health``, another thread) that
    gets the new policy from ``current()`` must not also get the refused edit's ``last_error``.
    The snapshot is taken at the instant the new policy becomes visible."""
    at_swap: list[tuple[str | None, tuple[object, ...]]] = []

    class Observed(PolicyHotReloader):
        def __setattr__(self, name: str, value: object) -> None:
            if name == "_policy" and getattr(self, "_policy", None) is not None:
                at_swap.append((self.last_error, self.last_problems))
            super().__setattr__(name, value)

    reloader = Observed(policy_file, debounce_ms=FAST_MS).start(watch=False)
    try:
        policy_file.unlink()
        assert reloader.reload_now().status == "failed"
        assert reloader.last_error is not None
        policy_file.write_text(policy_yaml(ping_expr="false"))
        assert reloader.reload_now().status == "reloaded"
        assert ping_action(reloader) == "BLOCK"
        assert at_swap == [(None, ())]
    finally:
        reloader.stop()


def _configmap(mount: Path, stamp: str, files: dict[str, str]) -> None:
    """Lay out one ConfigMap revision the way the kubelet does: a timestamped dir + ``..data``."""
    revision = mount / f"..{stamp}"
    revision.mkdir()
    for name, text in files.items():
        (revision / name).write_text(text)
    tmp_link = mount / "..data_tmp"
    tmp_link.symlink_to(revision.name)
    old = os.readlink(mount / "..data") if (mount / "..data").is_symlink() else None
    os.rename(tmp_link, mount / "..data")  # the atomic swap
    for name in files:
        if not (mount / name).is_symlink():
            (mount / name).symlink_to(Path("..data") / name)
    if old is not None:
        shutil.rmtree(mount / old)


def test_configmap_symlink_swap_triggers_a_reload(tmp_path: Path) -> None:
    mount = tmp_path / "config"
    mount.mkdir()
    v1 = {"policy.yaml": policy_yaml(ping_expr="true", schema_ref="item.json"),
          "item.json": SCHEMA_V1}  # fmt: skip
    _configmap(mount, "2026_11_25_10_00_00.000000001", v1)
    policy_file = mount / "policy.yaml"
    with PolicyHotReloader(policy_file, debounce_ms=FAST_MS) as r:
        first = r.current()
        assert ping_action(r) == "ALLOW"

        v2 = {**v1, "policy.yaml": policy_yaml(ping_expr="false", schema_ref="item.json")}
        _configmap(mount, "2026_11_25_10_05_00.000000002", v2)
        wait_for(lambda: ping_action(r) == "BLOCK")
        assert r.current().version != first.version

        # A second swap that changes only the schema is seen as well.
        v3 = {**v2, "item.json": SCHEMA_V2}
        _configmap(mount, "2026_11_25_10_10_00.000000003", v3)
        wait_for(lambda: r.stats.reloads == 2)
        assert evaluate(r.current(), items_ctx({"name": "x"})).action == "BLOCK"
        assert r.stats.failures == 0


def test_an_edit_to_a_referenced_schema_triggers_a_reload(policy_dir: Path) -> None:
    schema = policy_dir / "schemas" / "item.json"
    schema.write_text(SCHEMA_V1)
    policy_file = policy_dir / "policy.yaml"
    policy_file.write_text(policy_yaml(schema_ref="schemas/item.json"))
    with PolicyHotReloader(policy_file, debounce_ms=FAST_MS) as r:
        assert schema.resolve() in {Path(f).resolve() for f in r.current().files}
        assert evaluate(r.current(), items_ctx({"name": "x"})).action == "ALLOW"

        schema.write_text(SCHEMA_V2)  # now "owner" is required
        wait_for(lambda: r.stats.reloads == 1)
        assert evaluate(r.current(), items_ctx({"name": "x"})).action == "BLOCK"
        assert evaluate(r.current(), items_ctx({"name": "x", "owner": "o"})).action == "ALLOW"


def test_a_newly_referenced_schema_is_watched_after_the_reload(policy_dir: Path) -> None:
    policy_file = policy_dir / "policy.yaml"
    policy_file.write_text(policy_yaml())
    schema = policy_dir / "schemas" / "item.json"
    schema.write_text(SCHEMA_V1)
    with PolicyHotReloader(policy_file, debounce_ms=FAST_MS) as r:
        policy_file.write_text(policy_yaml(schema_ref="schemas/item.json"))
        wait_for(lambda: r.stats.reloads == 1)
        schema.write_text(SCHEMA_V2)
        wait_for(lambda: r.stats.reloads == 2)
        assert evaluate(r.current(), items_ctx({"name": "x"})).action == "BLOCK"


def test_unchanged_content_does_not_reload(policy_file: Path) -> None:
    with PolicyHotReloader(policy_file, debounce_ms=FAST_MS) as r:
        first = r.current()
        os.utime(policy_file)  # touch
        (policy_file.parent / "notes.txt").write_text("unrelated file in the same directory")
        policy_file.write_text(policy_file.read_text())  # rewritten with the same bytes
        wait_for(lambda: r.stats.skipped >= 1)  # the events were seen and judged spurious
        time.sleep(3 * FAST_MS / 1000)
        assert r.current() is first
        assert r.stats.reloads == 0 and r.stats.failures == 0


def test_reload_now_forces_a_reload_and_can_check_for_changes(policy_file: Path) -> None:
    r = PolicyHotReloader(policy_file, debounce_ms=FAST_MS)
    r.start(watch=False)  # SIGHUP-only mode
    try:
        first = r.current()
        assert r.reload_now(force=False).status == "unchanged"
        result = r.reload_now()
        assert result.status == "reloaded" and r.current() is not first
        policy_file.write_text(policy_yaml(ping_expr="false"))
        time.sleep(3 * FAST_MS / 1000)
        assert ping_action(r) == "ALLOW", "watch=False must not react to file events"
        r.request_reload()
        wait_for(lambda: ping_action(r) == "BLOCK")
        policy_file.write_text("not: [valid")
        failed = r.reload_now()
        assert failed.status == "failed" and failed.problems
        assert ping_action(r) == "BLOCK"
    finally:
        r.stop()


def test_start_refuses_an_invalid_initial_policy(policy_dir: Path) -> None:
    bad = policy_dir / "policy.yaml"
    bad.write_text("policyVersion: '0.1'\nroutes: 12\n")
    with pytest.raises(InvalidPolicy):
        PolicyHotReloader(bad).start()


def test_after_stop_edits_are_ignored_and_current_still_answers(policy_file: Path) -> None:
    r = PolicyHotReloader(policy_file, debounce_ms=FAST_MS).start()
    r.stop()
    assert not r.running
    policy_file.write_text(policy_yaml(ping_expr="false"))
    time.sleep(3 * FAST_MS / 1000)
    assert ping_action(r) == "ALLOW"


def test_readers_always_see_a_whole_policy_during_reloads(policy_file: Path) -> None:
    failures: list[BaseException] = []
    stop = threading.Event()
    actions: set[str] = set()

    def read(r: PolicyHotReloader) -> None:
        while not stop.is_set():
            try:
                actions.add(ping_action(r))
            except BaseException as exc:
                failures.append(exc)
                return

    with PolicyHotReloader(policy_file, debounce_ms=50) as r:
        readers = [threading.Thread(target=read, args=(r,)) for _ in range(2)]
        for t in readers:
            t.start()
        try:
            for expr in ("false", "true", "false"):
                before = r.stats.reloads
                write_atomic(policy_file, policy_yaml(ping_expr=expr))
                wait_for(lambda b=before: r.stats.reloads > b)
        finally:
            stop.set()
            for t in readers:
                t.join(5)
    assert failures == []
    assert actions == {"ALLOW", "BLOCK"}
