"""libinjection, the optional piece behind the ``sqlInjection`` and ``xss`` checks.

``libinjection-python`` ships no wheel: installing it compiles C, so it is an extra
(``extauthz[injection]``) and a plain ``pip install extauthz`` needs no compiler. Without it
the engine still imports; a policy that turns either check on is refused at load with
``INSTALL`` (``policy.load_policy``, from each detector's ``unavailable``), so a check never silently does nothing.
"""

from __future__ import annotations

try:
    import libinjection as _lib
except ImportError:  # the extra is not installed
    _lib = None

AVAILABLE = _lib is not None
INSTALL = "pip install 'extauthz[injection]'"
# Why a detector built on it cannot run here (``Detector.unavailable``); None when it can.
UNAVAILABLE = (
    None
    if AVAILABLE
    else "needs libinjection, an optional piece that is not installed (it compiles C, so a "
    f"plain install leaves it out): {INSTALL}"
)


def sql_fingerprint(value: str) -> str | None:
    """libinjection's SQL tokenizer: the fingerprint of an injection, None for none."""
    assert _lib is not None, "policy load refuses sqlInjection without libinjection"
    result = _lib.is_sql_injection(value)
    return str(result["fingerprint"]) if result["is_sqli"] else None


def is_xss(value: str) -> bool:
    """libinjection's HTML5 tokenizer, run in each context a value can land in."""
    assert _lib is not None, "policy load refuses xss without libinjection"
    return bool(_lib.is_xss(value)["is_xss"])
