"""Body decoders: one module per format, registered when this package is imported, keyed by
media type for the body phase (``engine/body.py``).

Adding a decoder is adding ``extauthz/engine/decoders/<name>.py`` that defines
``DECODER = Decoder(...)`` (see ``Decoder``; the kinds of result and the depth pre-scan are in
``_base``, re-exported by ``engine/body.py``) and its tests. The registry's tables are read on
every request, so ``register`` may run at any time (tests do).
"""

from __future__ import annotations

from ..._plugins import submodules
from ._base import Decode, Decoder, ParsedBody

__all__ = [
    "BY_MEDIA_TYPE",
    "BY_SUFFIX",
    "SNIFFERS",
    "Decode",
    "Decoder",
    "ParsedBody",
    "decoders",
    "for_media_type",
    "register",
    "unregister",
]

# The tables the body phase reads; changed in place, so that its module-level references stay
# current.
BY_MEDIA_TYPE: dict[str, Decoder] = {}
BY_SUFFIX: dict[str, Decoder] = {}
SNIFFERS: list[Decoder] = []  # by rank
_REGISTERED: dict[str, Decoder] = {}


def register(decoder: Decoder) -> Decoder:
    """Add ``decoder``; a name, media type or suffix another decoder has is refused."""
    if decoder.name in _REGISTERED:
        raise ValueError(f"body decoder {decoder.name!r} is already registered")
    for table, keys in ((BY_MEDIA_TYPE, decoder.media_types), (BY_SUFFIX, decoder.suffixes)):
        for key in keys:
            if key != key.strip().lower() or not key:
                raise ValueError(f"{decoder.name}: {key!r} is not a lower-case media type")
            if key in table:
                raise ValueError(f"{decoder.name}: {key!r} is decoded by {table[key].name!r}")
    _REGISTERED[decoder.name] = decoder
    BY_MEDIA_TYPE.update(dict.fromkeys(decoder.media_types, decoder))
    BY_SUFFIX.update(dict.fromkeys(decoder.suffixes, decoder))
    _index_sniffers()
    return decoder


def unregister(name: str) -> None:
    """Remove a decoder (tests that registered one)."""
    decoder = _REGISTERED.pop(name, None)
    if decoder is None:
        return
    for key in decoder.media_types:
        del BY_MEDIA_TYPE[key]
    for key in decoder.suffixes:
        del BY_SUFFIX[key]
    _index_sniffers()


def _index_sniffers() -> None:
    SNIFFERS[:] = [d for d in decoders() if d.sniff is not None]


def decoders() -> tuple[Decoder, ...]:
    """Every decoder, by rank then name."""
    return tuple(sorted(_REGISTERED.values(), key=lambda d: (d.rank, d.name)))


def for_media_type(media_type: str) -> Decoder | None:
    """The decoder of a bare, lower-case media type: by the type, else by its ``+suffix``."""
    decoder = BY_MEDIA_TYPE.get(media_type)
    if decoder is None and "+" in media_type:
        decoder = BY_SUFFIX.get(media_type.rpartition("+")[2])
    return decoder


for _module in submodules(__name__, __path__):
    register(_module.DECODER)
