"""Instructions per request in a real server process, per HTTP door, under callgrind.

Deterministic where wall-clock is not (2 shared cores): ``extauthz serve`` on the demo policy
runs under ``valgrind --tool=callgrind`` (instrumentation off until it serves), a keep-alive
client in this process sends one request at a time on a Unix socket, as Envoy's pooled
connection does, and the instructions the server executed are counted over a fixed number of
requests after a warm-up (``callgrind_control``: zero, send, dump). Whole process: the event
loop, httptools, the door, the decider, the engine, the answer, the collector; the client is
outside it.

Doors (the requests of the end-to-end benches):

    authz     Envoy's HTTP-mode ext_authz (``bench/envoy_bench.py``): POST
              /ext_authz/api/v1/licenses/activate with the headers Envoy's http_service sends
              for the demo's JWT request (captured from Envoy with ``envoy/envoy-http.yaml``:
              x-jwt-payload, x-contractshield-*, x-envoy-*, a fresh x-request-id each time)
              and the clean JSON body
    evaluate  POST /v1/evaluate (``bench/node_sidecar_bench.py``): what wrk sends, the
              clean-activate context

Each door's first answer is kept with its date (and a random request id) masked (``--answers FILE`` writes
them): compare the files of two checkouts to see that no answer byte moved.

Run: ``.venv/bin/python bench/door_instructions.py [--n 2000] [--warmup 500]
[--annotate 30]``; needs valgrind. Figures: docs/deployment.md, "Sizing".
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from http_bench import CONTEXTS  # noqa: E402

POLICY = ROOT / "policies" / "demo.yaml"
BODY = json.dumps(
    {
        "licenseKey": "ABCD-1234-EFGH-5678",
        "deviceId": "device-42",
        "tenantId": "acme",
        "callbackUrl": "https://app.example.com/hooks/license",
    }
).encode()  # json.dumps as wrk's Lua body in envoy_bench (138 bytes)
# jwt_authn's forward_payload_header: the token's payload segment (fixed iat/exp: the PDP
# reads no clock from it on this policy).
CLAIMS = {"sub": "alice", "tenant": "acme", "scope": "licenses:write", "iat": 1796596875,
          "exp": 1796600475}  # fmt: skip
PAYLOAD = base64.urlsafe_b64encode(json.dumps(CLAIMS).encode()).rstrip(b"=")


def authz_request(i: int) -> bytes:
    """What Envoy sent for envoy_bench's request (capture, header order kept), request ``i``."""
    rid = f"{i:08x}-0c70-4a56-9fab-83c4014841f0".encode()
    return (
        b"POST /ext_authz/api/v1/licenses/activate HTTP/1.1\r\n"
        b"host: 127.0.0.1:40275\r\n"
        b"content-length: %d\r\n"
        b"x-request-id: %s\r\n"
        b"accept-encoding: identity\r\n"
        b"x-jwt-payload: %s\r\n"
        b"content-type: application/json\r\n"
        b"x-envoy-auth-partial-body: false\r\n"
        b"x-forwarded-proto: http\r\n"
        b"x-contractshield-client-address: 127.0.0.1\r\n"
        b"x-contractshield-content-length: %d\r\n"
        b"x-envoy-internal: true\r\n"
        b"x-envoy-expected-rq-timeout-ms: 200\r\n"
        b"\r\n" % (len(BODY), rid, PAYLOAD, len(BODY))
    ) + BODY


EVALUATE_BODY = json.dumps(CONTEXTS["clean-activate"], separators=(",", ":")).encode()


def evaluate_request(i: int) -> bytes:
    """What wrk sends in node_sidecar_bench (its header spelling and order)."""
    return (
        b"POST /v1/evaluate HTTP/1.1\r\n"
        b"Host: 127.0.0.1:8081\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: %d\r\n"
        b"\r\n" % len(EVALUATE_BODY)
    ) + EVALUATE_BODY


DOORS = {"authz": authz_request, "evaluate": evaluate_request}


class Client:
    """One keep-alive connection; one request at a time, the whole answer read."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.buf = b""

    def send(self, request: bytes) -> bytes:
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buf:
            self._read()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        m = re.search(rb"(?im)^content-length: *(\d+)", head)
        length = int(m.group(1)) if m else 0
        while len(rest) < length:
            self._read()
            head, _, rest = self.buf.partition(b"\r\n\r\n")
        self.buf = rest[length:]
        return head + b"\r\n\r\n" + rest[:length]

    def _read(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def close(self) -> None:
        self.sock.close()


def masked(answer: bytes) -> bytes:
    """The answer without what changes on every run: the date, /v1/evaluate's random id."""
    answer = re.sub(rb"(?im)^date: [^\r]*", b"date: -", answer)
    return re.sub(rb'"requestId":"[0-9a-f]{32}"', b'"requestId":"-"', answer)


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def totals(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError(f"{path}: no totals")


def wait_for(path: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        if os.path.exists(path):
            try:
                client = Client(path)
                client.send(b"GET /live HTTP/1.1\r\nhost: x\r\n\r\n")
                client.close()
                return
            except OSError:
                pass
        time.sleep(0.5)
    raise TimeoutError("server did not answer /live")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="requests counted per door")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--doors", default="authz,evaluate")
    parser.add_argument("--annotate", type=int, default=0, help="top N functions per door")
    parser.add_argument("--answers", type=Path, help="write each door's first answer here")
    parser.add_argument("--keep", type=Path, help="keep the callgrind files in this directory")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        print("valgrind is needed (apt-get install valgrind)", file=sys.stderr)
        return 2
    work = Path(args.keep or tempfile.mkdtemp(prefix="door-instructions-"))
    work.mkdir(parents=True, exist_ok=True)
    sock = str(work / "http.sock")
    # a fixed hash seed: dict and set probes, hence counts, the same from run to run
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "warning", "PYTHONHASHSEED": "0"}
    env.update(kv.split("=", 1) for kv in args.env)
    argv = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no",
        f"--callgrind-out-file={work}/callgrind.out", sys.executable, "-m", "extauthz",
        "serve", "--policy", str(POLICY), "--http-unix-socket", sock,
        "--grpc-port", "0", "--http-port", "0",
    ]  # fmt: skip
    with open(work / "server.log", "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    answers: list[bytes] = []
    try:
        wait_for(sock, proc, 300)
        control(proc.pid, "-i", "on")
        client = Client(sock)
        print(f"{args.n} requests per door after {args.warmup}, one keep-alive connection")
        print(f"{'door':<10} {'instructions/request':>22}")
        for name in args.doors.split(","):
            make = DOORS[name]
            first = client.send(make(0))
            status = first.split(b" ", 2)[1]
            if status != b"200":
                raise RuntimeError(f"{name}: {first[:300]!r}")
            answers.append(b"== " + name.encode() + b"\n" + masked(first) + b"\n")
            for i in range(1, args.warmup):
                client.send(make(i))
            control(proc.pid, "-z")
            for i in range(args.warmup, args.warmup + args.n):
                client.send(make(i))
            control(proc.pid, "-d", name)
            dump = max(work.glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
            dump = dump.rename(work / f"{name}.callgrind")
            print(f"{name:<10} {totals(dump) / args.n:>22,.0f}", flush=True)
            if args.annotate:
                out = subprocess.run(
                    ["callgrind_annotate", "--inclusive=no", str(dump)],
                    capture_output=True, text=True, check=True,
                ).stdout  # fmt: skip
                lines = out.splitlines()
                start = next(i for i, line in enumerate(lines) if "file:function" in line)
                print("\n".join(lines[start + 2 : start + 2 + args.annotate]))
        client.close()
    finally:
        proc.terminate()
        proc.wait(60)
    if args.answers:
        args.answers.write_bytes(b"".join(answers))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
