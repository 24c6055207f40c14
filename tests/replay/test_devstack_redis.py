"""The devstack redis-server: free port, temp dir, SIGKILL and restart on the same port."""

from __future__ import annotations

from extauthz.devstack.redis import RedisServer, redis_answers


def test_kill_and_restart_on_the_same_port_then_cleanup() -> None:
    server = RedisServer()
    try:
        server.start()
        port, workdir = server.port, server.workdir
        assert redis_answers(server.host, port)
        assert server.url == f"redis://127.0.0.1:{port}/0"

        server.kill()
        assert not server.running
        assert not redis_answers(server.host, port)

        server.start()
        assert server.port == port
        assert redis_answers(server.host, port)
        assert not any(workdir.glob("*.rdb")), "persistence must be off"
    finally:
        server.cleanup()
    assert not server.running
    assert not workdir.exists()


def test_two_servers_get_different_ports() -> None:
    with RedisServer() as a, RedisServer() as b:
        assert a.port != b.port
        assert redis_answers(a.host, a.port) and redis_answers(b.host, b.port)
