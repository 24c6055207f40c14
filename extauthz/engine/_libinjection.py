"""libinjection, the optional piece behind the ``sqlInjection`` and ``xss`` checks.

``libinjection-python`` ships no wheel: installing it compiles C, so it is an extra
(``extauthz[injection]``) and a plain ``pip install extauthz`` needs no compiler. Without it
the engine still imports; a policy that turns either check on is refused at load with
``INSTALL`` (``policy.load_policy``), so a check never silently does nothing.
"""

from __future__ import annotations

try:
    import libinjection as _lib
except ImportError:  # the extra is not installed
    _lib = None

AVAILABLE = _lib is not None
INSTALL = "pip install 'extauthz[injection]'"
CHECKS = ("sqlInjection", "xss")  # the policy's names of the checks that need it


def sql_fingerprint(value: str) -> str | None:
    """libinjection's SQL tokenizer: the fingerprint of an injection, None for none."""
    assert _lib is not None, "policy load refuses sqlInjection without libinjection"
    result = _lib.is_sql_injection(value)
    return str(result["fingerprint"]) if result["is_sqli"] else None


def is_xss(value: str) -> bool:
    """libinjection's HTML5 tokenizer, run in each context a value can land in."""
    assert _lib is not None, "policy load refuses xss without libinjection"
    return bool(_lib.is_xss(value)["is_xss"])
