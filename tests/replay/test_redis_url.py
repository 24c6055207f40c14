"""``REDIS_URL`` parsing: every topology, TLS, passwords, and a clear refusal for each mistake."""

from __future__ import annotations

import pytest

from extauthz import InvalidConfig
from extauthz.replay_redis import (
    DEFAULT_WAIT_MS,
    RedisReplayStore,
    parse_redis_url,
    redact_url,
)
from extauthz.server.config import ServerConfig


def test_a_single_redis_keeps_redis_py_reading_and_no_wait() -> None:
    target = parse_redis_url("redis://:pw@h:6380/2?socket_timeout=0.2")
    assert target.topology == "single" and target.min_replicas == 0
    assert target.url == "redis://:pw@h:6380/2?socket_timeout=0.2"
    assert parse_redis_url("rediss://h:6379/0").tls is True
    assert parse_redis_url("unix:///run/redis.sock?db=1").topology == "single"


def test_our_own_options_are_taken_off_a_single_redis_url() -> None:
    target = parse_redis_url("redis://h:6379/0?min_replicas=1&wait_ms=10&socket_timeout=0.1")
    assert (target.min_replicas, target.wait_ms) == (1, 10)
    assert target.url == "redis://h:6379/0?socket_timeout=0.1"


def test_sentinel_url() -> None:
    target = parse_redis_url(
        "redis+sentinel://app:s3cret@s1:26379,s2:26380,[::1]:26381/mymaster/3"
        "?sentinel_password=sp&socket_timeout=0.2"
    )
    assert target.topology == "sentinel" and not target.tls
    assert target.hosts == (("s1", 26379), ("s2", 26380), ("::1", 26381))
    assert (target.service, target.db) == ("mymaster", 3)
    assert (target.username, target.password) == ("app", "s3cret")
    assert target.options == {"sentinel_password": "sp", "socket_timeout": 0.2}
    assert (target.min_replicas, target.wait_ms) == (1, DEFAULT_WAIT_MS), "WAIT on by default"
    assert parse_redis_url("redis+sentinel://s1:26379/mymaster").db == 0


def test_cluster_url_with_tls_and_a_password_only() -> None:
    target = parse_redis_url("rediss+cluster://:pw@n1:7000,n2:7001?ssl_ca_certs=/ca.pem")
    assert target.topology == "cluster" and target.tls
    assert target.hosts == (("n1", 7000), ("n2", 7001))
    assert (target.username, target.password) == (None, "pw")
    assert target.options == {"ssl_ca_certs": "/ca.pem"}
    assert target.min_replicas == 1
    assert parse_redis_url("redis+cluster://n1:7000/0?min_replicas=0").min_replicas == 0


def test_percent_encoded_credentials_are_decoded() -> None:
    target = parse_redis_url("redis+sentinel://u%40x:p%3Aw%40d@s1:26379/svc")
    assert (target.username, target.password) == ("u@x", "p:w@d")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://h:6379", "expected redis://, rediss://, unix://, redis+sentinel://"),
        ("h:6379", "expected redis://"),
        ("redis://", "no host"),
        ("redis+sentinel://s1:26379", "no service name"),
        ("redis+sentinel://s1:26379/svc/x", "expected a database number"),
        ("redis+sentinel://s1:26379/svc/0/extra", "expected a database number"),
        ("redis+sentinel://s1/svc", "expected HOST:PORT, got 's1'"),
        ("redis+sentinel://s1:26379,,s2:1/svc", "expected HOST:PORT, got ''"),
        ("redis+cluster://n1:99999", "expected HOST:PORT, got 'n1:99999'"),
        ("redis+cluster://n1:7000/1", "database 0 only"),
        ("redis+cluster://n1:7000?sentinel_password=x", "unknown option 'sentinel_password'"),
        ("redis+sentinel://s1:1/svc?socket_timout=1", "unknown option 'socket_timout'"),
        ("redis+sentinel://s1:1/svc?socket_timeout=0", "socket_timeout must be a positive"),
        ("redis+sentinel://s1:1/svc?socket_timeout=abc", "socket_timeout must be a positive"),
        ("redis+sentinel://s1:1/svc?min_replicas=-1", "min_replicas must be a whole number"),
        ("redis+sentinel://s1:1/svc?wait_ms=0", "wait_ms must be a positive"),
        ("redis+sentinel://s1:1/svc?wait_ms=50", "wait_ms (50) must be below socket_timeout"),
        ("redis+cluster://n1:1?ssl_ca_certs=/ca.pem", "ssl_ca_certs needs TLS"),
        ("redis+cluster://n1:1?wait_ms=1&wait_ms=2", "given twice"),
    ],
)
def test_malformed_urls_are_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(InvalidConfig, match=r"^REDIS_URL: ") as info:
        parse_redis_url(url)
    assert reason in str(info.value)
    with pytest.raises(InvalidConfig):
        RedisReplayStore(url)


def test_refusals_never_show_the_password() -> None:
    for url in (
        "redis+sentinel://u:hunter2@s1:26379",
        "redis+cluster://:hunter2@n1:7000/5",
        "redis+sentinel://s1:1/svc?sentinel_password=hunter2&bogus=1",
    ):
        with pytest.raises(InvalidConfig) as info:
            parse_redis_url(url)
        assert "hunter2" not in str(info.value)


def test_redaction_of_host_lists_and_sentinel_passwords() -> None:
    assert (
        redact_url("redis+sentinel://app:pw@s1:1,s2:2/svc/0?sentinel_password=x&wait_ms=5")
        == "redis+sentinel://app:***@s1:1,s2:2/svc/0?sentinel_password=***&wait_ms=5"
    )
    assert redact_url("redis+cluster://n1:1,n2:2") == "redis+cluster://n1:1,n2:2"
    assert "pw" not in repr(RedisReplayStore("redis+cluster://:pw@n1:7000"))


def test_the_server_setting_is_checked_at_start_up() -> None:
    env = {"POLICY_PATH": "p.yaml", "REDIS_URL": "redis+sentinel://s1:26379"}
    with pytest.raises(InvalidConfig, match="REDIS_URL: no service name"):
        ServerConfig.resolve(environ=env)
    env["REDIS_URL"] = "redis+sentinel://s1:26379,s2:26379/mymaster/0"
    assert ServerConfig.resolve(environ=env).redis_url == env["REDIS_URL"]
