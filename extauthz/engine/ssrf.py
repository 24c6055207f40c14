"""Is a URL or host name aimed at an internal network or a cloud metadata service?

Hosts are read the way lenient resolvers read them: IPv4 in decimal, hex, octal and short
forms (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``), IPv6 with zone ids and
IPv4-mapped/NAT64 forms, wildcard-DNS names that embed an address (``10.0.0.1.nip.io``) and
well-known internal names. No DNS lookups: the engine is pure and a lookup would be both slow
and racy (DNS rebinding); resolving-time protection belongs to the upstream's egress.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from urllib.parse import unquote, urlsplit

_METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.packet.net",
        "metadata.platformequinix.com",
    }
)
_LOCAL_NAMES = frozenset(
    {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "localtest.me"}
)
_LOCAL_SUFFIXES = (
    ".localhost",
    ".local",
    ".internal",
    ".cluster.local",
    ".localtest.me",
    ".lvh.me",
    ".vcap.me",
    ".lacolhost.com",
)
_LOCAL_EXACT = frozenset({"lvh.me", "vcap.me", "lacolhost.com"})
_WILDCARD_DNS = (".nip.io", ".sslip.io", ".xip.io", ".xip.name", ".nip.direct", ".traefik.me")
_DANGEROUS_SCHEMES = frozenset({"file", "gopher", "dict", "ldap", "ldaps", "jar", "netdoc", "tftp"})
_HEX8 = re.compile(r"^[0-9a-f]{8}$")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# WHATWG URL parsing (browsers, Node, undici) accepts any run of slashes or backslashes, or
# none, after a special scheme: "http:/h", "http:\\\\h" and "http:h" all mean "http://h".
_SPECIAL_SCHEME = re.compile(r"(?:https?|wss?|ftp):[/\\]*", re.I)
# A special-scheme URL whose host is plain ASCII (letters, digits, dots, hyphens) with at most a
# numeric port: urlsplit reads exactly this host (no userinfo, brackets, escapes, whitespace or
# non-ASCII to interpret), so the common case skips it. ASCII only: with re.I, [a-z] would also
# match U+017F (long s) and U+212A (Kelvin sign), which urlsplit reads differently.
_PLAIN_URL = re.compile(
    r"(?i:https?|wss?|ftp):[/\\]*([A-Za-z0-9.-]+)(?::[0-9]*)?(?=[/\\?#]|\Z)", re.A
)
# Letters no number form uses (not a hex digit, not the "x" of "0x"): a name ending in one, such
# as "example.com", is never an address.
_NAME_END = frozenset("ghijklmnopqrstuvwyzGHIJKLMNOPQRSTUVWYZ")


def looks_like_url(value: str) -> bool:
    """True when ``value`` would be read as a URL by a lenient (WHATWG) parser."""
    return "//" in value or _SPECIAL_SCHEME.match(value.lstrip()) is not None


def ssrf_reason(value: str, *, bare_host: bool) -> str | None:
    """Return why ``value`` targets an internal host, or ``None``.

    ``bare_host`` says a value without ``://`` is read as a host name (for fields the policy
    names explicitly); otherwise only URLs are inspected.
    """
    text = value.strip()
    plain = _PLAIN_URL.match(text)
    if plain is not None:  # hot path: the host urlsplit reads below (only case and dots to fix)
        return _normal_host_reason(plain.group(1).lower().rstrip("."))
    special = _SPECIAL_SCHEME.match(text)
    if special is not None:
        text = text[: special.end()].rstrip("/\\") + "//" + text[special.end() :]
    if "://" in text or text.startswith("//"):
        scheme = text.partition(":")[0].lower() if "://" in text else ""
        if scheme in _DANGEROUS_SCHEMES:
            return f"URL scheme {scheme!r} reaches local resources"
        try:
            host = urlsplit(text.replace("\\", "/")).hostname
        except ValueError:
            return "URL cannot be parsed unambiguously"
        if host is None:
            return None
    elif bare_host:
        host = text.split("/", 1)[0]
        if host.startswith("[") and "]" in host:
            host = host[1 : host.index("]")]
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
    else:
        return None
    return host_reason(host)


def host_reason(host: str) -> str | None:
    """Return why a host name or address is internal, or ``None``."""
    h = host.strip().lower()
    if "%" in h and not h.startswith("["):
        h = unquote(h)  # WHATWG percent-decodes hosts: "%31%32%37.0.0.1" is 127.0.0.1
    if not h.isascii():
        # IDNA (UTS 46) maps compatibility forms before resolving: "①②⑦", "ⓛⓞⓒⓐⓛⓗⓞⓢⓣ",
        # fullwidth digits and ideographic full stops ("127。0。0。1") all reach the ASCII host.
        h = unicodedata.normalize("NFKC", h).replace("\u3002", ".").lower()
    h = h.rstrip(".")
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    return _normal_host_reason(h)


def _normal_host_reason(h: str) -> str | None:
    """``host_reason`` of a host already normalised: lower case, no trailing dot or brackets."""
    if not h:
        return None
    if h in _METADATA_NAMES:
        return f"cloud metadata host {h!r}"
    if h in _LOCAL_NAMES or h in _LOCAL_EXACT or h.endswith(_LOCAL_SUFFIXES):
        return f"local host name {h!r}"
    addr = parse_ip(h)
    if addr is not None:
        return _ip_reason(addr)
    if h.endswith(_WILDCARD_DNS):
        label = h.rsplit(".", 2)[0]
        embedded = _embedded_ip(label)
        if embedded is not None:
            reason = _ip_reason(embedded)
            if reason is not None:
                return f"wildcard DNS name {h!r} resolves to {reason}"
    return None


def _embedded_ip(label: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a wildcard-DNS name embeds: ``a.b.c.d``, ``a-b-c-d`` or 8 hex digits."""
    parts = re.split(r"[.-]", label)
    if len(parts) >= 4:
        candidate = ".".join(parts[-4:])
        addr = parse_ip(candidate)
        if addr is not None:
            return addr
    last = parts[-1]
    if _HEX8.match(last):
        return ipaddress.IPv4Address(int(last, 16))
    if "--" in label:  # sslip.io IPv6 form: fe80--1.sslip.io
        try:
            return ipaddress.IPv6Address(label.rsplit(".", 1)[-1].replace("-", ":"))
        except ValueError:
            return None
    return None


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Parse an address the way ``inet_aton``/browsers do, or return ``None``."""
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            return None
    if text[-1:] in _NAME_END:  # hot path: a host name, not worth splitting
        return None
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or "" in parts:
        return None
    values: list[int] = []
    for part in parts:
        # int() also takes a sign, "_" and surrounding spaces, which no address parser does:
        # "0x-1" would become IPv4Address(-1) and raise instead of being a host name.
        if not part.isalnum():
            return None
        try:
            if part[:2] in ("0x", "0X"):
                values.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part[0] == "0":
                values.append(int(part, 8))
            elif part.isdigit():
                values.append(int(part))
            else:
                return None
        except ValueError:
            return None
    last = values[-1]
    head = values[:-1]
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        return None
    number = 0
    for v in head:
        number = number * 256 + v
    number = (number << (8 * (5 - len(values)))) | last
    return ipaddress.IPv4Address(number)


def _ip_reason(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(addr, ipaddress.IPv6Address):
        mapped = addr.ipv4_mapped or (
            ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF) if addr in _NAT64 else None
        )
        if mapped is not None:
            return _ip_reason(mapped)
        if addr.sixtofour is not None:
            return _ip_reason(addr.sixtofour)
        if addr == ipaddress.IPv6Address("fd00:ec2::254"):
            return "cloud metadata address fd00:ec2::254"
    if str(addr) in ("169.254.169.254", "100.100.100.200", "169.254.170.2", "192.0.0.192"):
        return f"cloud metadata address {addr}"
    if addr.is_loopback:
        return f"loopback address {addr}"
    if addr.is_unspecified:
        return f"unspecified address {addr}"
    if addr.is_link_local:
        return f"link-local address {addr}"
    if addr.is_private or not addr.is_global or addr.is_multicast:
        return f"internal address {addr}"
    return None
