"""Is a URL or host name aimed at an internal network or a cloud metadata service?

URL parsers disagree, so the check assumes the worst: a URL is internal when *any* common
parser would send it to an internal host. The readings it takes, and the parsers behind them:

- WHATWG URL (browsers, Node's ``new URL()``, undici): leading/trailing C0 controls and
  spaces stripped, tab/CR/LF removed anywhere; after a special scheme (http, https, ws, wss,
  ftp) any run of ``/`` or ``\\`` (or none) starts the authority, and ``\\`` ends it like
  ``/``; the host is percent-decoded and IDNA-mapped (UTS 46); a relative ``//host`` or
  ``\\\\host`` takes the page's scheme.
- Python's ``urllib.parse`` (``\\`` belongs to the authority: ``a\\@h`` is user ``a\\``, host
  ``h``) and ``urlopen`` (``<URL:...>`` unwrapped, the host percent-decoded before
  ``http.client`` splits off a port, ``file:/path`` with one slash or none read as a file).
- Go's ``net/url`` (the user info ends at the last ``@``, escapes decoded in the host) and
  Java's ``java.net.URL`` (``\\`` belongs to the authority, as in urllib).
- Parsers that do not stop at ``?`` or ``#`` before looking for ``@`` (``a#@h``, ``a?@h``).

Every host one of them reads is canonicalised the way resolvers read it: percent-decoded,
IDNA-mapped as UTS 46 and IDNA 2003 both do (default-ignorable code points such as the soft
hyphen and zero-width characters dropped, compatibility forms such as fullwidth or circled
digits and ideographic full stops mapped to ASCII), lower case, trailing dot dropped; IPv4 in
every form ``inet_aton`` and WHATWG accept (decimal, hex, octal, short, mixed) and, where a
part has a leading zero, the decimal reading Java and Go before 1.17 connect to; IPv6
with the IPv4 it embeds (mapped, compatible, NAT64, 6to4, Teredo). A name is internal when it
is a local or metadata name, a wildcard-DNS name that embeds an internal address, or, where
the URL reaches a network host, a single label (resolved through the hosts file or the
resolver's search domains, as Kubernetes pods resolve ``redis``).

No DNS lookups: the engine is pure and a lookup would be both slow and racy (DNS rebinding);
resolving-time protection belongs to the upstream's egress. Every step is a ``str`` method, a
table lookup or an anchored regex without nested quantifiers: linear time on hostile input.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from urllib.parse import unquote

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "metadata.tencentyun.com",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.packet.net",
        "metadata.platformequinix.com",
    }
)
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in {
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, ...
        "169.254.170.2",  # AWS ECS task credentials
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "168.63.129.16",  # Azure WireServer (a public address every Azure VM reaches)
        "fd00:ec2::254",  # AWS over IPv6
    }
)
_LOCAL_NAMES = frozenset(
    {
        "localhost", "localhost.localdomain", "localhost6", "localhost6.localdomain6",
        "ip6-localhost", "ip6-loopback", "ip6-localnet", "ip6-allnodes", "ip6-allrouters",
        "_gateway", "_outbound",  # systemd-resolved / nss-myhostname
        "kubernetes", "kubernetes.default", "kubernetes.default.svc",
        "localtest.me", "lvh.me", "vcap.me", "lacolhost.com", "localhost.direct",
    }
)  # fmt: skip
_LOCAL_SUFFIXES = (
    ".localhost",
    ".local",
    ".localdomain",
    ".internal",
    ".intranet",
    ".private",
    ".corp",
    ".home",
    ".lan",
    ".home.arpa",
    ".svc",
    ".cluster.local",
    ".localtest.me",
    ".lvh.me",
    ".vcap.me",
    ".lacolhost.com",
    ".localhost.direct",
)
# Public wildcard-DNS services that answer with an address written in the name.
_WILDCARD_DNS = (
    ".nip.io",
    ".sslip.io",
    ".xip.io",
    ".xip.name",
    ".nip.direct",
    ".traefik.me",
    ".1u.ms",
    ".rbndr.us",
)
# Schemes that reach local files or raw local services whatever the host (urlopen, Java, PHP,
# curl): flagged on sight.
_LOCAL_SCHEMES = frozenset(
    {
        "file", "local_file", "netdoc", "jar", "phar", "php", "expect", "glob",
        "gopher", "dict", "ldap", "ldaps", "ldapi", "tftp",
    }
)  # fmt: skip
_SPECIAL_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp"})
# Other schemes whose authority names a network host: a single-label name there is internal.
# (An app's own scheme, "myapp://settings", names no host.)
_NETWORK_SCHEMES = frozenset(
    {
        "sftp", "ftps", "ssh", "telnet", "smb", "nfs", "rsync", "git", "svn", "rtsp",
        "redis", "rediss", "mongodb", "mongodb+srv", "postgres", "postgresql", "mysql",
        "mariadb", "amqp", "amqps", "mqtt", "mqtts", "nats", "kafka", "memcached",
        "elasticsearch", "smtp", "smtps", "imap", "imaps", "pop3", "pop3s", "sip", "xmpp",
    }
)  # fmt: skip
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+._-]*):")  # "_": Python 2's local_file:
_TWO_SLASHES = frozenset({"//", "\\\\", "/\\", "\\/"})
# WHATWG strips C0 controls and spaces around a URL; str.strip() strips Unicode whitespace.
_STRIP = "".join(chr(c) for c in range(0x21)) + "".join(
    c for c in map(chr, range(0x80, 0x3001)) if c.isspace()
)
_DROP_TAB_NEWLINE = str.maketrans("", "", "\t\n\r")  # WHATWG and urllib drop them anywhere
# Substrings a value needs for the anywhere-check (``looks_like_url`` then ``ssrf_reason``) to
# fire: "//" or a scheme's ":", a backslash (WHATWG reads "\\\\h" as "//h"), or a slash
# followed by what WHATWG removes ("/\t/h" is "//h").
URL_TRIGGERS = ("//", ":", "\\", "/\t", "/\n", "/\r")
_URL_START = re.compile(
    r"[\x00-\x20]*(?:<[\x00-\x20]*)?(?:URL:[\x00-\x20]*)?"  # what _strip and _unwrap remove
    r"(?:[/\\][/\\]|[a-z][a-z0-9+._-]*:[/\\][/\\]"
    rf"|(?:{'|'.join(sorted(_SPECIAL_SCHEMES))}):"
    rf"|(?:{'|'.join(map(re.escape, sorted(_LOCAL_SCHEMES)))}):"
    r"(?![\t-\r\x1c-\x20])[\x00-\x20]*[^\x00-\x20])",  # not "File: prose"
    re.I | re.A,
)
# hot path: a special-scheme URL whose authority is a plain ASCII host (letters, digits, dots,
# hyphens) with at most a numeric port, ended by "/", the end, or a "?" or "#" with no "@"
# before the next "/": every reading below gives this one host (no user info, brackets,
# escapes, backslashes, lists, whitespace or non-ASCII to interpret). ASCII only: with re.I,
# [a-z] would also match U+017F (long s) and U+212A (Kelvin sign), which IDNA maps.
_PLAIN_URL = re.compile(
    r"(?i:https?|wss?|ftp):[/\\]*([A-Za-z0-9.-]+)(?::[0-9]*)?(?:/|[?#][^/@]*(?:/|\Z)|\Z)", re.A
)
# The same for a bare host name of a named field (no port: "ftp:21" would read as a scheme).
_PLAIN_HOST = re.compile(r"([A-Za-z0-9.-]+)(?:/|[?#][^/@]*(?:/|\Z)|\Z)", re.A)
# Letters no number form uses (not a hex digit, not the "x" of "0x"): a name ending in one, such
# as "example.com", is never an address.
_NAME_END = frozenset("ghijklmnopqrstuvwyzGHIJKLMNOPQRSTUVWYZ")
# Default-ignorable code points (Unicode's Default_Ignorable_Code_Point, a superset of what
# UTS 46 ignores), the joiners UTS 46 transitional processing and IDNA 2003 drop, and U+1806
# (IDNA 2003's table B.1): some IDNA implementation maps each to nothing.
_IGNORABLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u1806\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
# After mapping, a host holding one of these splits again the way an authority does.
_AUTHORITY_DELIMITERS = re.compile(r"[@:/\\?#\[\],%\s]")
_HEX8 = re.compile(r"[0-9a-f]{8}")
_QUERY_OR_FRAGMENT = re.compile(r"[?#]")
_WHITESPACE = re.compile(r"\s")
_NAME_LABEL = re.compile(r"[\w-]+")  # a single label a resolver would look up
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: local use
_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated IPv4-compatible
_SITE_LOCAL = ipaddress.IPv6Network("fec0::/10")  # deprecated, not global
_DECIMAL_NOTE = " (a leading zero read as decimal, as Java and older Go do)"
_RAW, _DECODED, _MAPPED = 0, 1, 2  # how far a host text has been canonicalised


def _strip(text: str) -> str:
    """``text`` without leading and trailing C0 controls, spaces and Unicode whitespace."""
    text = text.strip()  # hot path: str.strip() is much faster than strip(_STRIP)
    if text[:1] < "!" or text[-1:] < "!":  # a C0 control that is not whitespace ("\x00")
        text = text.strip(_STRIP)
    return text


def looks_like_url(value: str) -> bool:
    """True when some parser would read ``value`` as a URL with a host or a local resource."""
    if "//" in value or _URL_START.match(value) is not None:
        return True
    if value.isascii() and "\t" not in value and "\n" not in value and "\r" not in value:
        return False  # hot path: _URL_START allows for all that _strip and _unwrap remove
    return _looks_like_url(value)


def _looks_like_url(value: str) -> bool:
    """``looks_like_url`` without the hot-path shortcut."""
    text = _clean(_strip(value))
    if "//" in text or _URL_START.match(text) is not None:
        return True
    return _wrapped(text) and _URL_START.match(_unwrap(text)) is not None


def ssrf_reason(value: str, *, bare_host: bool) -> str | None:
    """Return why ``value`` targets an internal host, or ``None``.

    ``bare_host`` says a value without a scheme is read as a host name (for fields the policy
    names explicitly); otherwise only URLs are inspected.
    """
    text = value.strip()  # hot path: _strip inlined
    if text and (text[0] < "!" or text[-1] < "!"):
        text = text.strip(_STRIP)
    plain = _PLAIN_URL.match(text)
    if plain is not None:  # hot path: every reading gives this host (only case and dots to fix)
        return _normal_host_reason(plain.group(1).lower().rstrip("."), True)
    if bare_host:
        plain = _PLAIN_HOST.match(text)
        if plain is not None:
            return _normal_host_reason(plain.group(1).lower().rstrip("."), True)
    return _reason(text, bare_host)


def _reason(text: str, bare_host: bool) -> str | None:
    """``ssrf_reason`` of a stripped value without the hot-path shortcuts: every reading."""
    text = _clean(text)
    reason = _url_reason(text, bare_host)
    if reason is None and _wrapped(text):
        reason = _url_reason(_unwrap(text), bare_host)
    return reason


def _clean(text: str) -> str:
    """``text`` (stripped) without the tabs and newlines WHATWG and urllib remove anywhere."""
    if "\t" in text or "\n" in text or "\r" in text:
        return _strip(text.translate(_DROP_TAB_NEWLINE))
    return text


def _wrapped(text: str) -> bool:
    return text[:1] == "<" or text[:4].upper() == "URL:"


def _unwrap(text: str) -> str:
    """What ``urlopen`` makes of ``<URL:http://h/>`` (``urllib.parse.unwrap``, any case)."""
    if text[:1] == "<" and text[-1:] == ">":
        text = _strip(text[1:-1])
    if text[:4].upper() == "URL:":
        text = _strip(text[4:])
    return text


def _url_reason(text: str, bare_host: bool) -> str | None:
    m = _SCHEME.match(text)
    if m is not None:
        scheme = m.group(1).lower()
        rest = text[m.end() :]
        if scheme in _LOCAL_SCHEMES:
            # "file:/etc/passwd", "file:etc/passwd": urlopen reads a file. "File: see below"
            # in free text is prose (a space after the colon), unless the field is a URL field.
            if bare_host or (rest and not rest[0].isspace()):
                return f"URL scheme {scheme!r} reaches local resources"
        elif scheme in _SPECIAL_SCHEMES:  # WHATWG: any run of slashes and backslashes, or none
            return _authority_reason(rest.lstrip("/\\"), True, _RAW)
        elif rest[:2] in _TWO_SLASHES:
            return _authority_reason(rest.lstrip("/\\"), scheme in _NETWORK_SCHEMES, _RAW)
        # else an opaque URL (mailto:, urn:), or a bare "host:port" read as a scheme
    elif text[:2] in _TWO_SLASHES:  # relative to a page with a special scheme: "//h", "\\h"
        return _authority_reason(text.lstrip("/\\"), True, _RAW)
    if bare_host:
        return _authority_reason(text, True, _RAW)
    return None


def _authority_reason(text: str, network: bool, stage: int) -> str | None:
    """The reason of the first internal host among the readings of an authority.

    ``text`` starts where the authority starts; ``network`` says a single-label name is a
    network host (not an app's own scheme).
    """
    slash = text.find("/")
    region = text if slash < 0 else text[:slash]
    seen: set[str] = set()
    for hostport in _hostports(region):
        parts = [hostport]
        if "," in hostport and not _WHITESPACE.search(hostport):  # a list has no spaces
            parts = hostport.split(",")
        for part in parts:
            if part in seen:
                continue
            seen.add(part)
            reason = _hostport_reason(part, network, stage)
            if reason is not None:
                return reason
    return None


def _hostports(region: str) -> list[str]:
    """The host[:port] each parser reads in an authority ``region`` (up to its first "/")."""
    end = _QUERY_OR_FRAGMENT.search(region)
    urllib_like = region if end is None else region[: end.start()]  # "\\" is a character
    backslash = urllib_like.find("\\")
    whatwg = urllib_like if backslash < 0 else urllib_like[:backslash]  # "\\" is "/"
    out = [whatwg.rpartition("@")[2]]
    if backslash >= 0:
        out.append(urllib_like.rpartition("@")[2])
    if end is not None and "@" in region[end.start() :]:
        # "a#@h", "a?@h": a parser that looks for "@" before "?" and "#"
        last = region.rpartition("@")[2]
        cut = _QUERY_OR_FRAGMENT.search(last)
        last = last if cut is None else last[: cut.start()]
        out.append(last)
        if "\\" in last:
            out.append(last[: last.index("\\")])
    return out


def _hostport_reason(hostport: str, network: bool, stage: int) -> str | None:
    if stage == _RAW and "%" in hostport:
        # WHATWG decodes the host; urlopen decodes host and port before http.client splits
        # them ("127.0.0.1%3A80", "%5B::1%5D"). Once: no parser decodes twice.
        decoded = unquote(hostport, errors="replace")
        if decoded != hostport:
            reason = _authority_reason(decoded, network, _DECODED)
            if reason is not None:
                return reason
    if hostport[:1] == "[":
        end = hostport.find("]")
        hosts = [hostport[1:end]] if end > 0 else []
    else:
        host, colon, port = hostport.partition(":")  # the first ":" (urllib, WHATWG)
        hosts = [host]
        if colon and _WHITESPACE.search(port):
            hosts = []  # "Note: the call is at 12:30" is no host and port to any parser
        if ":" in port and _readings(hostport):
            hosts = [hostport]  # an IPv6 address without brackets (a bare host field)
    for host in hosts:
        reason = _host_text_reason(host, network, stage)
        if reason is not None:
            return reason
    return None


def _host_text_reason(host: str, network: bool, stage: int) -> str | None:
    h = host
    if not h.isascii() and stage < _MAPPED:
        for mapped in _idna_readings(h):
            if _AUTHORITY_DELIMITERS.search(mapped):  # a fullwidth "@" (U+FF20) became "@"
                reason = _authority_reason(mapped, network, _MAPPED)
            else:
                reason = _normal_host_reason(mapped.rstrip("."), network)
            if reason is not None:
                return reason
        return None
    space = _WHITESPACE.search(h)
    if space is not None:
        # inet_aton (getaddrinfo before glibc 2.29, as in RHEL 8) ignores what follows
        # whitespace after an address: "127.0.0.1 x" is 127.0.0.1. Only dotted or hex forms:
        # "2 apples" in a host field is prose. No resolver looks up a name with a space.
        prefix = h[: space.start()].lower()
        if ("." in prefix or prefix[:2] == "0x") and prefix[-1:] not in (".", "x"):
            return _address_reason(prefix)[1]
        return None
    return _normal_host_reason(h.lower().rstrip("."), network)


def _idna_readings(host: str) -> list[str]:
    """The names IDNA implementations look up for a non-ASCII host: UTS 46 and IDNA 2003's
    mappings together (``idna_map``), and Python's own codec (what ``socket`` applies to a
    ``str`` host), which keeps some code points the others drop (U+E0100: an ``xn--`` label
    where the others read a number; only a one-label host can turn internal that way)."""
    readings = [idna_map(host)]
    if "." in readings[0].rstrip("."):  # then its xn-- labels change no name check's answer
        return readings
    try:
        python = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return readings
    if python != readings[0]:
        readings.append(python)
    return readings


def idna_map(host: str) -> str:
    """``host`` as IDNA maps it before lookup (UTS 46 and IDNA 2003, whichever maps more).

    Ignorable code points are dropped, compatibility forms NFKC-folded and case-folded
    (fullwidth letters, "①②⑦", "ß" as "ss"), the ideographic full stops become dots. Every
    code point that Node's or Python's IDNA maps to ASCII maps to the same ASCII here
    (tests/engine/test_engine_ssrf_differential.py checks all of Unicode).
    """
    h = _IGNORABLE.sub("", host)
    h = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", h).casefold())
    return _IGNORABLE.sub("", h).replace("\u3002", ".")


def host_reason(host: str) -> str | None:
    """Return why a host name or address (no port) is internal, or ``None``."""
    h = _strip(host)
    if h[:1] == "[" and h[-1:] == "]":
        h = h[1:-1]
    if "%" in h:
        decoded = unquote(h, errors="replace")
        reason = _host_text_reason(decoded, True, _DECODED)
        if reason is not None:
            return reason
    return _host_text_reason(h, True, _RAW)


def _normal_host_reason(h: str, network: bool) -> str | None:
    """The reason of a host already canonical: mapped, lower case, no trailing dot."""
    if not h:
        return None
    if h in _METADATA_NAMES:
        return f"cloud metadata host {h!r}"
    if h in _LOCAL_NAMES or h.endswith(_LOCAL_SUFFIXES):
        return f"local host name {h!r}"
    address = False
    if h[-1] not in _NAME_END:  # hot path: no address form ends in these letters
        address, reason = _address_reason(h)
        if reason is not None:
            return reason
    if h.endswith(_WILDCARD_DNS) and len(h) <= 253:  # DNS answers no longer name
        reason = _wildcard_reason(h)
        if reason is not None:
            return reason
    if network and not address and "." not in h and _NAME_LABEL.fullmatch(h):
        return f"single-label host name {h!r} (resolved by the hosts file or search domains)"
    return None


def _wildcard_reason(h: str) -> str | None:
    """An internal address a wildcard-DNS name embeds (``a.b.c.d``, ``a-b-c-d``, 8 hex digits
    or sslip.io's ``fe80--1``), anywhere before the service's domain."""
    label = h.rsplit(".", 2)[0]
    parts = re.split(r"[.-]", label)
    for i in range(len(parts)):
        candidates = []
        if i + 4 <= len(parts):
            candidates.append(".".join(parts[i : i + 4]))
        if _HEX8.fullmatch(parts[i]):
            candidates.append(str(ipaddress.IPv4Address(int(parts[i], 16))))
        for candidate in candidates:
            reason = _address_reason(candidate)[1]
            if reason is not None:
                return f"wildcard DNS name {h!r} resolves to {reason}"
    last = label.rsplit(".", 1)[-1]
    if "--" in last:  # sslip.io's IPv6 form: fe80--1.sslip.io
        try:
            addr = ipaddress.IPv6Address(last.replace("-", ":"))
        except ValueError:
            return None
        reason = _ip_reason(addr)
        if reason is not None:
            return f"wildcard DNS name {h!r} resolves to {reason}"
    return None


def parse_ip(text: str) -> _Address | None:
    """Parse an address the way ``inet_aton`` and WHATWG do, or return ``None``."""
    readings = _readings(text)
    return readings[0][0] if readings and not readings[0][1] else None


def ip_readings(text: str) -> tuple[_Address, ...]:
    """Every address some parser reads in ``text`` (see ``_readings``)."""
    return tuple(addr for addr, _ in _readings(text))


def _address_reason(text: str) -> tuple[bool, str | None]:
    """Whether some parser reads ``text`` as an address, and why the first internal one is."""
    readings = _readings(text)
    for addr, decimal in readings:
        reason = _ip_reason(addr)
        if reason is not None:
            return True, f"{reason}{_DECIMAL_NOTE}" if decimal else reason
    return bool(readings), None


def _readings(text: str) -> tuple[tuple[_Address, bool], ...]:
    """The ``inet_aton``/WHATWG reading of ``text`` (hex ``0x7f``, octal ``0177``, short forms),
    then, when a part has a leading zero, the decimal reading (``True``): Java before 17.0.3
    and Go before 1.17 connect to 10.0.0.1 for ``010.0.0.1``, which inet_aton reads 8.0.0.1."""
    if ":" in text:
        try:
            return ((ipaddress.IPv6Address(text.split("%", 1)[0]), False),)
        except ValueError:
            return ()
    if text[-1:] in _NAME_END or not text.isascii():  # hot path: a host name, not worth splitting
        return ()
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or "" in parts:
        return ()
    values: list[int] = []
    decimal = True  # every part is decimal digits
    leading_zero = False
    for part in parts:
        # int() also takes a sign, "_" and surrounding spaces, which no address parser does:
        # "0x-1" would become IPv4Address(-1) and raise instead of being a host name.
        if not part.isalnum():
            return ()
        if part[:2] in ("0x", "0X"):
            digits, base = part[2:].lstrip("0"), 16
            decimal = False
        elif len(part) > 1 and part[0] == "0":
            digits, base = part.lstrip("0"), 8
            leading_zero = True
        elif part.isdigit():
            digits, base = part, 10
        else:
            return ()
        if len(digits) > 12:  # beyond 2**32 in any base: not an address (and no big ints)
            return ()
        try:
            values.append(int(digits or "0", base))
        except ValueError:
            if base != 8 or not part.isdigit():
                return ()
            values.append(-1)  # "08": no octal reading; maybe a decimal one
    out: list[tuple[_Address, bool]] = []
    addr = _ipv4(values) if -1 not in values else None
    if addr is not None:
        out.append((addr, False))
    if leading_zero and decimal:
        other = _ipv4([int(p.lstrip("0") or "0") for p in parts])  # at most 12 digits each
        if other is not None and other != addr:
            out.append((other, True))
    return tuple(out)


def _ipv4(values: list[int]) -> ipaddress.IPv4Address | None:
    """The address of 1 to 4 numbers, the last filling the remaining bytes (inet_aton)."""
    last = values[-1]
    head = values[:-1]
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        return None
    number = 0
    for v in head:
        number = number * 256 + v
    return ipaddress.IPv4Address((number << (8 * (5 - len(values)))) | last)


def _ip_reason(addr: _Address) -> str | None:
    if addr in _METADATA_ADDRESSES:
        return f"cloud metadata address {addr}"
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:  # the IPv4 address itself, on a dual stack
            return _ip_reason(addr.ipv4_mapped)
        embedded = _embedded_ipv4(addr)
        if embedded is not None:
            reason = _ip_reason(embedded)
            if reason is not None:
                return f"{reason} (embedded in {addr})"
        if addr in _NAT64_LOCAL or addr in _SITE_LOCAL:
            return f"internal address {addr}"
    if addr.is_loopback:
        return f"loopback address {addr}"
    if addr.is_unspecified:
        return f"unspecified address {addr}"
    if addr.is_link_local:
        return f"link-local address {addr}"
    if addr.is_private or not addr.is_global or addr.is_multicast:
        return f"internal address {addr}"
    return None


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches: compatible, NAT64, 6to4, Teredo's client."""
    if addr in _NAT64 or (addr in _COMPATIBLE and int(addr) > 1):
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]  # the client, de-obfuscated
    return None
