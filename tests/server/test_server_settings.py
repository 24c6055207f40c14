"""Server settings are declared once (``server.config.SETTINGS``): the ``serve`` flags, the
environment, the workers' environment and docs/deployment.md's table agree with it."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from extauthz.server.config import SETTINGS, ServerConfig, Setting
from extauthz.server.workers import Supervisor

DOCS = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
_CELL = re.compile(r"(?<!\\)\|")  # a table cell boundary (``\|`` inside a cell is text)
_NAME = re.compile(r"`([A-Z][A-Z0-9_]*)`")
_FLAG = re.compile(r"`(--[a-z-]+)`")


def _tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table: rows of cells, the header first, the separator row left out."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in _CELL.split(line.strip())[1:-1]]
            if not all(set(c) <= set("-: ") for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def settings_table() -> dict[str, tuple[str, str]]:
    """docs/deployment.md's settings table: environment variable -> (flag cell, default cell)."""
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## Running the server") :]
    table = next(t for t in _tables(section) if t[0][:3] == ["flag", "environment", "default"])
    rows: dict[str, tuple[str, str]] = {}
    for flag, environment, default, _meaning in table[1:]:
        names = _NAME.findall(environment)
        assert len(names) == 1, f"one setting a row: {environment}"
        assert names[0] not in rows, f"{names[0]} documented twice"
        rows[names[0]] = (flag, default)
    return rows


def test_every_declared_setting_is_a_field_and_the_other_way_round() -> None:
    assert [s.name for s in SETTINGS] == [f.name for f in fields(ServerConfig)]
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)
    flags = [s.flag for s in SETTINGS if s.flag is not None]
    assert len(set(flags)) == len(flags)


def test_the_docs_table_lists_every_setting_with_its_flag_and_default() -> None:
    rows = settings_table()
    declared = {s.env: s for s in SETTINGS}
    assert sorted(set(declared) - set(rows)) == [], "declared but not documented"
    assert sorted(set(rows) - set(declared)) == [], "documented but not declared"
    for env, (flag_cell, default_cell) in rows.items():
        s = declared[env]
        assert flag_cell == (f"`{s.flag}`" if s.flag else "—"), env
        assert s.shown in default_cell.replace("`", ""), (env, s.shown, default_cell)


def test_every_setting_the_docs_name_in_a_settings_column_is_declared() -> None:
    declared = {s.env for s in SETTINGS}
    named: set[str] = set()
    for table in _tables(DOCS.read_text(encoding="utf-8")):
        header = [cell.lower() for cell in table[0]]
        for column in ("environment", "setting"):
            if column in header:
                i = header.index(column)
                named |= {n for row in table[1:] for n in _NAME.findall(row[i])}
    # the decision log's and hot reload's own tables are read too
    assert {"DECISION_LOG_REDACT", "RELOAD_DEBOUNCE_MS"} <= named
    assert sorted(named - declared) == []


def _serve_help() -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "extauthz", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", **_pythonpath()},
    )
    return proc.stdout


def _pythonpath() -> dict[str, str]:
    import os

    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}


def test_serve_help_has_exactly_the_declared_flags_and_names_every_setting() -> None:
    text = _serve_help()
    options = set(re.findall(r"^\s+(--[a-z-]+)", text, re.M)) - {"--help"}
    assert options == {s.flag for s in SETTINGS if s.flag is not None}
    for s in SETTINGS:
        assert s.env in text, s.env
    # the flags it had before the declaration, by name
    assert {"--policy", "--no-hot-reload", "--no-http-tls", "--allow-request-policy"} <= options


@pytest.mark.parametrize(
    "setting", [s for s in SETTINGS if s.default is not None], ids=lambda s: s.env
)
def test_a_default_spelled_for_the_environment_reads_back_as_itself(setting: Setting) -> None:
    text = setting.to_env(setting.default)
    if text == "":  # an empty variable is an unset one: the default
        config = ServerConfig.resolve(None, {setting.env: text})
        assert getattr(config, setting.name) == setting.default
    else:
        assert setting.parse(text, setting.env) == setting.default


def test_each_variable_is_read_and_a_flag_beats_it() -> None:
    samples = {
        "socket_mode": 0o600,
        "workers": 1,
        "log_level": "debug",
        "max_request_bytes": 1 << 20,
    }
    environ = {"UNIX_SOCKET": "/tmp/cs/settings.sock"}
    expected: dict[str, object] = {"unix_socket": "/tmp/cs/settings.sock"}
    for s in SETTINGS:
        if s.name in expected or s.name.startswith("tls_"):
            continue  # TLS files must exist and come as a set: tests/tls
        value = samples.get(s.name, s.default)
        if isinstance(value, bool):
            value = not value
        elif isinstance(value, int | float) and s.name not in samples:
            value = value + 1
        elif value is None or value == "":
            value = {"policy_path": "p.yaml", "redis_url": "redis://r:6379/0"}.get(s.name)
            if value is None:
                continue
        environ[s.env] = s.to_env(value)
        expected[s.name] = value
    config = ServerConfig.resolve(None, environ)
    assert {name: getattr(config, name) for name in expected} == expected
    assert {"decision_log_queue", "explain_api", "event_loop"} <= set(expected)

    from extauthz.cli import build_parser

    args = build_parser().parse_args(["serve", "--grpc-port", "7001", "--no-hot-reload"])
    config = ServerConfig.resolve(args, environ)
    assert (config.grpc_port, config.hot_reload) == (7001, False)


def test_a_worker_gets_every_resolved_setting_in_its_environment(tmp_path: Path) -> None:
    config = ServerConfig.resolve(
        None,
        {
            "UNIX_SOCKET": str(tmp_path / "pdp.sock"),
            "SOCKET_MODE": "0600",
            "WORKERS": "2",
            "REDIS_URL": "redis://r:6379/0",
            "DECISION_LOG": "off",
            "EVENT_LOOP": "asyncio",
        },
    )
    env = Supervisor(config, directory=tmp_path).worker_env(1)
    worker = ServerConfig.resolve(None, env)
    assert worker.unix_socket == str(tmp_path / "pdp.1.sock")  # one socket per worker
    assert (worker.workers, worker.hot_reload) == (1, False)  # the supervisor watches
    for s in SETTINGS:
        if s.name not in ("unix_socket", "workers", "hot_reload"):
            assert getattr(worker, s.name) == getattr(config, s.name), s.name
    assert env["SOCKET_MODE"] == "0o600" and "POLICY_PATH" not in env
