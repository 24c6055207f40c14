"""Real Redis high-availability set-ups for tests: Sentinel (a primary, a replica, three
sentinels) and Cluster (three primaries, three replicas), on loopback ports in temp dirs,
always stopped.

The timings that decide the failover window are the ones the docs quote
(``docs/deployment.md``, "Redis Sentinel and Cluster"): sentinels call the primary down after
``DOWN_AFTER_MS`` without an answer; a cluster replica starts its election after
``CLUSTER_NODE_TIMEOUT_MS``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import redis

from extauthz.devstack import _process, free_port
from extauthz.devstack.redis import find_redis_server, redis_answers

SERVICE = "contractshield"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
CLUSTER_NODE_TIMEOUT_MS = 1000
START_TIMEOUT = 15.0


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


class Node:
    """One ``redis-server`` (plain, replica, cluster node or sentinel) on a loopback port."""

    def __init__(
        self, workdir: Path, name: str, args: list[str], *, conf: str = "", bus: bool = False
    ) -> None:
        self.port = free_port()
        # A cluster node's bus port; by default port + 10000, out of range for high free ports.
        self.bus_port = free_port() if bus else 0
        self.dir = workdir / name
        self.dir.mkdir(parents=True)
        self.name = name
        self.conf = conf
        self.args = list(args)  # never the caller's list: replicas extend theirs
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        head = [find_redis_server()]
        if self.conf:
            path = self.dir / "node.conf"
            path.write_text(self.conf.replace("{port}", str(self.port)))
            head.append(str(path))
        return [
            *head,
            "--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "no",
            "--daemonize", "no", "--dir", str(self.dir), "--logfile", str(self.dir / "log"),
            *(["--cluster-port", str(self.bus_port)] if self.bus_port else []),
            *self.args,
        ]  # fmt: skip

    def start(self) -> Node:
        for attempt in range(3):
            with open(self.dir / "stderr", "ab") as err:
                self.process = subprocess.Popen(
                    self.argv(), stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT
                )
            try:
                ready = _process.wait_ready(
                    self.process,
                    lambda: redis_answers("127.0.0.1", self.port),
                    timeout=START_TIMEOUT,
                    name=f"redis {self.name}",
                    log_tail=self.log_tail,
                )
            except RuntimeError:
                # Exited at once: another process took a port between free_port() and the
                # bind (the machine is shared). Ports nobody was told about can change.
                if attempt == 2:
                    raise
                self.port = free_port()
                self.bus_port = free_port() if self.bus_port else 0
                continue
            if not ready:
                self.stop()
                raise TimeoutError(f"redis {self.name} did not answer: {self.log_tail()}")
            return self
        raise AssertionError("unreachable")

    def kill(self) -> None:
        """SIGKILL: the host is gone, nothing is flushed or handed over."""
        _process.kill(self.process, timeout=5)

    def stop(self) -> None:
        _process.terminate(self.process, timeout=5)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def log_tail(self) -> str:
        text = ""
        for name in ("stderr", "log"):
            with contextlib.suppress(OSError):
                text += (self.dir / name).read_text(errors="replace")[-600:]
        return text


_PLAIN = ["--save", "", "--appendonly", "no"]


class _Group:
    nodes: list[Node]

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="cs-redis-ha-", dir="/tmp"))
        self.nodes = []

    def _node(self, name: str, args: list[str], conf: str = "", bus: bool = False) -> Node:
        node = Node(self.workdir, name, args, conf=conf, bus=bus)
        self.nodes.append(node)
        return node

    def cleanup(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


class SentinelSet(_Group):
    """A primary, one replica and three sentinels watching service ``SERVICE``."""

    def __init__(self, *, replicas: int = 1) -> None:
        super().__init__()
        self.primary = self._node("primary", _PLAIN)
        self.replicas = [self._node(f"replica{i}", _PLAIN) for i in range(replicas)]
        self.sentinels: list[Node] = []

    def start(self) -> SentinelSet:
        try:
            self.primary.start()
            for replica in self.replicas:
                replica.args += ["--replicaof", "127.0.0.1", str(self.primary.port)]
                replica.start()
            for replica in self.replicas:
                wait_until(
                    lambda r=replica: (
                        r.client().info("replication").get("master_link_status") == "up"
                    ),
                    START_TIMEOUT,
                    f"{replica.name} in sync",
                )
            conf = (
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            for i in range(3):
                self.sentinels.append(self._node(f"sentinel{i}", ["--sentinel"], conf=conf))
            for sentinel in self.sentinels:
                sentinel.start()
            wait_until(self._sentinels_see_each_other, START_TIMEOUT, "sentinels discovered")
        except BaseException:
            self.cleanup()
            raise
        return self

    def _sentinels_see_each_other(self) -> bool:
        for sentinel in self.sentinels:
            fields = sentinel.client().sentinel_master(SERVICE)
            if int(fields["num-other-sentinels"]) < len(self.sentinels) - 1:
                return False
            if int(fields["num-slaves"]) < len(self.replicas):
                return False
        return True

    def url(self, scheme: str = "redis+sentinel", query: str = "") -> str:
        hosts = ",".join(s.address for s in self.sentinels)
        return f"{scheme}://{hosts}/{SERVICE}/0{query}"

    def primary_address(self) -> tuple[str, int]:
        """Who the sentinels say the primary is now."""
        host, port = (
            self.sentinels[0]
            .client()
            .execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        )
        return host.decode(), int(port)

    def settled_on(self, port: int) -> bool:
        """Every sentinel names ``port`` as the primary and sees it up (what redis-py's
        Sentinel client checks before it connects)."""
        for sentinel in self.sentinels:
            state = sentinel.client().sentinel_master(SERVICE)
            if int(state["port"]) != port or state["is_sdown"] or state["is_odown"]:
                return False
        return True

    def node_at(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def __enter__(self) -> SentinelSet:
        return self.start()


class ClusterSet(_Group):
    """Three primaries with ``replicas`` replicas each, joined with ``redis-cli --cluster
    create``."""

    def __init__(self, *, replicas: int = 1) -> None:
        super().__init__()
        self.replicas_per_primary = replicas
        for i in range(3 * (1 + replicas)):
            self._node(
                f"node{i}",
                [
                    *_PLAIN,
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
                ],
                bus=True,
            )  # fmt: skip

    def start(self) -> ClusterSet:
        try:
            for node in self.nodes:
                node.start()
            cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
            subprocess.run(
                [cli, "--cluster", "create", *(n.address for n in self.nodes),
                 "--cluster-replicas", str(self.replicas_per_primary), "--cluster-yes"],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            wait_until(self._ok, START_TIMEOUT, "cluster_state:ok on every node")
        except BaseException:
            self.cleanup()
            raise
        return self

    def _ok(self) -> bool:
        for node in self.nodes:
            if not node.running:
                continue
            info = node.client().execute_command("CLUSTER", "INFO").decode()
            if "cluster_state:ok" not in info:
                return False
            # Every replica must have finished its first sync, or a killed primary would leave
            # a replica with nothing to promote.
            role = node.client().info("replication")
            if role.get("role") == "slave" and role.get("master_link_status") != "up":
                return False
        return True

    def url(self, scheme: str = "redis+cluster", query: str = "") -> str:
        return f"{scheme}://{','.join(n.address for n in self.nodes[:3])}{query}"

    def slots_of(self, port: int) -> list[tuple[int, int]]:
        """The slot ranges the primary at ``port`` serves."""
        slots = self.nodes[0].client().execute_command("CLUSTER", "SLOTS")
        return [(start, end) for start, end, primary, *_ in slots if int(primary[1]) == port]

    def primary_for(self, key: str) -> Node:
        """The node that owns ``key``'s slot now."""
        for node in self.nodes:
            if not node.running:
                continue
            slot = node.client().execute_command("CLUSTER", "KEYSLOT", key)
            for start, end, master, *_ in node.client().execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    port = int(master[1])
                    return next(n for n in self.nodes if n.port == port)
        raise RuntimeError("no live node answers CLUSTER SLOTS")

    def __enter__(self) -> ClusterSet:
        return self.start()
