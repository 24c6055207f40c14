"""The compact JSON encoders, one instance each: ``json.dumps`` with options builds a new
``JSONEncoder`` on every call (~3 µs), and decisions, contexts and denials are written on
every check. ``encode`` keeps no state between calls, so one instance serves every thread."""

from __future__ import annotations

import json

#: ``json.dumps(x, separators=(",", ":"), ensure_ascii=False)``: UTF-8 text as it is.
COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
#: ``json.dumps(x, separators=(",", ":"))``: non-ASCII escaped.
COMPACT_ASCII = json.JSONEncoder(separators=(",", ":"))
