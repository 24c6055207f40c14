"""Python's urllib: ``urlsplit`` and what ``urlopen`` would connect to or open.

stdin: one URL per line, base64 of its UTF-8. stdout: one JSON array per line, the
[parser, scheme, host] readings. ``urlopen`` runs for real (no proxies) up to the resolver
call and the local-file open, which record their argument and fail instead of acting: the
host is the string ``socket.getaddrinfo`` receives, a local file is the scheme "file".
"""

from __future__ import annotations

import base64
import json
import socket
import sys
import urllib.parse
import urllib.request

_reached: list[list[str]] = []
_scheme = [""]  # the scheme urlopen dispatched on, for the resolver's record


class _Recorded(OSError):
    pass


def _getaddrinfo(host: object, port: object, *args: object, **kwargs: object) -> list:
    _reached.append(["urlopen", _scheme[0], host if isinstance(host, str) else repr(host)])
    raise _Recorded("recorded")


def _open_local_file(self: object, req: urllib.request.Request) -> object:
    _reached.append(["urlopen", "file", req.host or ""])
    raise _Recorded("recorded")


socket.getaddrinfo = _getaddrinfo  # type: ignore[assignment]
urllib.request.FileHandler.open_local_file = _open_local_file  # type: ignore[method-assign]
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def main() -> None:
    for line in sys.stdin:
        text = base64.b64decode(line.strip()).decode("utf-8")
        _reached.clear()
        try:
            parts = urllib.parse.urlsplit(text)
            if parts.hostname is not None:
                _reached.append(["urlsplit", parts.scheme, parts.hostname])
        except ValueError:
            pass
        try:
            _scheme[0] = urllib.request.Request(text).type
            _opener.open(text, timeout=1).close()
        except Exception:
            pass
        sys.stdout.write(json.dumps(_reached) + "\n")


if __name__ == "__main__":
    main()
