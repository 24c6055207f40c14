"""Signed timestamps, for the providers that sign one: their form, and the tolerance window."""

from __future__ import annotations


def is_timestamp(text: str | None) -> bool:
    """Epoch seconds as providers send them: digits only (no sign, no space), at most 12."""
    return text is not None and text.isdigit() and len(text) <= 12


def outside_tolerance(timestamp: str, now: float, tolerance: int) -> str | None:
    """Why a (well-formed) signed timestamp is refused, or None when it is recent enough."""
    if abs(now - int(timestamp)) > tolerance:
        return f"signature timestamp is outside the {tolerance} s tolerance"
    return None
