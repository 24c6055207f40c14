"""The SSRF check class by class: each trick URL parsers disagree on, internal and public.

A URL is internal when any common parser (WHATWG, urllib/urlopen, Go net/url, Java URI/URL)
reads an internal host in it; ``test_engine_ssrf_differential.py`` checks the same against
the real parsers. Here each class has its own cases, with public variants that must pass, and
the hot-path shortcuts are pinned to the plain reading.
"""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extauthz.decision import RuleHit
from extauthz.engine import ssrf
from extauthz.engine import vulnerability as v
from extauthz.engine.ssrf import URL_TRIGGERS, host_reason, ip_readings, looks_like_url, ssrf_reason

ANYWHERE = v.VulnerabilityConfig(ssrf_internal=v.Check(True))
NAMED = v.VulnerabilityConfig(ssrf_internal=v.Check(True, ("host",)))


def flagged(url: str) -> bool:
    """The whole detector on a JSON field, a form field and a query value (gate included)."""
    results = set()
    for body, query in (({"next": url}, {}), ({"a": [{"next": url}]}, {}), (None, {"next": url})):
        hits: list[RuleHit] = []
        v.check(ANYWHERE, body, query, False, hits)
        results.add(v.SSRF_INTERNAL in [h.id for h in hits])
    assert len(results) == 1, url  # the same answer wherever the value sits
    return results.pop()


CLASSES: dict[str, tuple[list[str], list[str]]] = {
    # class: (internal: flagged, public: passes)
    "tab, CR and LF anywhere": (
        [
            "ht\ttp://127.0.0.1/",
            "http://127.0.\n0.1/",
            "http://loc\r\nalhost/",
            "http:/\t/10.0.0.1",
            "/\t/127.0.0.1/",
            "\t\n http://169.254.169.254/",
            "http://[::\t1]/",
        ],
        ["ht\ttp://example.com/", "http://exam\nple.com/", "/\t/example.com/x"],
    ),
    "backslash as slash (WHATWG) or in the user info (urllib, Java URL)": (
        [
            "http://127.0.0.1\\@example.com/",
            "http://example.com\\@127.0.0.1/",
            "http:\\\\127.0.0.1\\x",
            "https:/\\10.0.0.1",
            "\\\\127.0.0.1\\share",
            "/\\127.0.0.1/",
            "\\/localhost/",
            "http://example.com\\x@10.0.0.1/",
        ],
        [
            "http://example.com\\@example.org/",
            "\\\\fileserver.example.com\\share",
            "http:\\\\example.com\\x",
        ],
    ),
    "user info: @, #@, ?@ and several @": (
        [
            "http://user:pass@127.0.0.1/",
            "http://example.com@127.0.0.1/",
            "http://example.com#@127.0.0.1/",
            "http://example.com?@10.0.0.1/",
            "http://a@b@127.0.0.1/",
            "http://example.com:80@169.254.169.254/",
            "//example.com@127.0.0.1/",
            "http://example.com?x=1@10.0.0.1",
        ],
        [
            "https://127.0.0.1@example.com/",
            "https://user@example.com:8443/p?next=a@b.example#x",
            "https://example.com/?email=joe@10.0.0.1",
            "https://example.com/#@127.0.0.1",
            "https://example.com?next=a@example.org",
        ],
    ),
    "percent-encoded hosts (WHATWG, urlopen)": (
        [
            "http://%31%32%37.0.0.1/",
            "http://127%2e0.0.1/",
            "http://127.0.0.1%3A6379/",
            "http://%5B::1%5D/",
            "http://[::%31]/",
            "http://local%C2%ADhost/",
            "http://%6c%6f%63%61%6c%68%6f%73%74/",
            "http://%EF%BC%91%EF%BC%92%EF%BC%97.0.0.1/",
        ],
        [
            "http://%65xample.com/",
            "http://example.com/%31%32%37.0.0.1",
            "http://b%C3%BCcher.example/",
        ],
    ),
    "IDNA drops what NFKC keeps (ignorables, joiners, variation selectors)": (
        [
            "http://local\u00adhost/",
            "http://local\u200bhost/",
            "http://local\u200chost/",
            "http://local\u200dhost/",
            "http://127.0.0.1\ufe0f/",
            "http://loc\u2060al\ufeffhost/",
            "http://metadata\u034f/",
            "http://local\u180bhost/",
            "http://local\u1806host/",
            "http://127.0.0.1\U000e0100/",
            "http://169\u200b.254.169.254/",
            "http://local\u2064host/",
        ],
        ["http://exam\u00adple.com/", "http://8.8.8.8\u200b/", "http://example\ufe0f.com/"],
    ),
    "IDNA maps compatibility forms to ASCII (digits, letters, dots)": (
        [
            "http://\uff11\uff12\uff17.0.0.1/",
            "http://\u2460\u2461\u2466.0.0.1/",
            "http://\U0001d7cf\U0001d7d0\U0001d7d5.0.0.1/",
            "http://\u00b9\u00b2\u2077.0.0.1/",
            "http://\u246b\u2466.0.0.1/",
            "http://127\u30020\u30020\u30021/",
            "http://127\uff0e0\uff0e0\uff0e1/",
            "http://127\uff610\uff610\uff611/",
            "http://127\u20240.0.1/",
            "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/",
            "http://\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3/",
            "http://LOCAL\u017fHOST/",
            "http://\u212aubernetes.default.svc/",
            "http://example.com\uff20127.0.0.1/",
            "http://127.0.0.1\u3000/",
        ],
        [
            "http://\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com/",
            "http://\uff18.\uff18.\uff18.\uff18/",
            "https://b\u00fccher.example/",
            "http://\u00df.example/",
        ],
    ),
    "IPv4 number forms (inet_aton and WHATWG)": (
        [
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0X7F.1/",
            "http://017700000001/",
            "http://0177.0.0.1/",
            "http://0x7f.0.0.0x1/",
            "http://127.1/",
            "http://10.1/",
            "http://0xa9.0376.43518/",
            "http://127.0.0.1./",
            "http://0/",
            "http://0x/",
            "http://00/",
            "http://0xA9FEA9FE/",
            "http://025177524776/",
            "http://192.168.257/",
        ],
        [
            "http://134744072/",
            "http://0x5db8d822/",
            "http://93.184.216.34/",
            "http://8.8.2056/",
            "http://1.2.3.4.5/",
        ],
    ),
    "a leading zero read as decimal too (Java, Go before 1.17)": (
        [
            "http://010.0.0.1/",
            "http://0127.0.0.1/",
            "http://0172.016.0.1/",
            "http://0192.0168.1.1/",
        ],
        ["http://0010.0x8.0x8.0x8/"],
    ),
    "IPv6 forms": (
        [
            "http://[::1]/",
            "http://[0:0:0:0:0:0:0:1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[64:ff9b:1::a]/",
            "http://[2002:7f00:1::]/",
            "http://[2002:a00:1::1]/",
            "http://[2001:0:4136:e378:8000:0:80ff:fffe]/",
            "http://[fe80::1%25eth0]/",
            "http://[fd12:3456::1]/",
            "http://[fec0::1]/",
            "http://[ff02::1]/",
            "http://[::]/",
            "http://[fd00:ec2::254]/",
            "http://[::1]:8080/x",
        ],
        [
            "http://[2606:4700:4700::1111]/",
            "http://[::ffff:8.8.8.8]/",
            "http://[64:ff9b::808:808]/",
            "http://[2002:808:808::1]/",
        ],
    ),
    "internal names": (
        [
            "http://localhost/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "http://_gateway/",
            "http://localhost6/",
            "http://printer.local/",
            "http://db.internal/",
            "http://router.home.arpa/",
            "http://api.default.svc/",
            "http://kubernetes.default/",
            "http://metadata/",
            "http://metadata.google.internal/",
            "http://metadata.tencentyun.com/",
            "http://foo.localhost.direct/",
            "http://redis:6379/",
            "ws://jenkins/",
            "redis://cache:6379/0",
            "postgres://db/app",
            "//intranet/",
        ],
        [
            "http://localhost.example.com/",
            "http://internal.example.com/",
            "http://example.com/",
            "myapp://settings",
            "slack://open",
            "spotify://track/1",
            "http://my.local.example/",
        ],
    ),
    "wildcard and rebinding DNS names": (
        [
            "http://169.254.169.254.nip.io/",
            "http://app.10.0.0.1.nip.io/",
            "http://10-0-0-1.sslip.io/",
            "http://a9fea9fe.nip.io/",
            "http://--1.sslip.io/",
            "http://fe80--1.sslip.io/",
            "http://make-127-0-0-1-rr.1u.ms/",
            "http://7f000001.c0a80001.rbndr.us/",
            "http://customer-192-168-1-1.traefik.me/",
        ],
        [
            "http://8.8.8.8.nip.io/",
            "http://example.nip.io/",
            "http://1-1-1-1.sslip.io/",
            "http://nip.io/",
        ],
    ),
    "schemes and wrappers that reach local resources": (
        [
            "file:///etc/passwd",
            "file:/etc/passwd",
            "file:etc/passwd",
            "FILE://localhost/etc/passwd",
            "file:\\\\server\\share",
            "netdoc:///etc/passwd",
            "jar:http://example.com/x.jar!/",
            "gopher://example.com:70/_x",
            "dict://127.0.0.1:11211/stats",
            "ldap://10.0.0.1/",
            "tftp://example.com/x",
            "local_file:///etc/passwd",
            "phar:///tmp/x.phar",
            "<URL:http://127.0.0.1/>",
            "URL:http://127.0.0.1/",
            "<url:file:/etc/passwd>",
            "\x00http://127.0.0.1/",
            "\x1f http://127.0.0.1/",
        ],
        [
            "File: see the attached report",
            "mailto:ops@example.com",
            "urn:isbn:0451450523",
            "data:text/plain,hello",
            "https://example.com/file:/etc/passwd",
            "<URL:https://example.com/>",
        ],
    ),
    "host lists": (
        ["postgres://db.example.com,10.0.0.1/app", "mongodb://a.example.com,localhost:27017/"],
        ["postgres://db1.example.com,db2.example.com/app"],
    ),
}
INTERNAL = [(c, u) for c, (internal, _) in CLASSES.items() for u in internal]
PUBLIC = [(c, u) for c, (_, public) in CLASSES.items() for u in public]


@pytest.mark.parametrize(("cls", "url"), INTERNAL, ids=[repr(u) for _, u in INTERNAL])
def test_internal_url_is_flagged(cls: str, url: str) -> None:
    assert ssrf_reason(url, bare_host=False) is not None, (cls, url)
    assert ssrf_reason(url, bare_host=True) is not None, (cls, url)
    assert any(t in url for t in URL_TRIGGERS) and looks_like_url(url), url
    assert flagged(url), (cls, url)


@pytest.mark.parametrize(("cls", "url"), PUBLIC, ids=[repr(u) for _, u in PUBLIC])
def test_public_url_passes(cls: str, url: str) -> None:
    assert ssrf_reason(url, bare_host=False) is None, (cls, url, ssrf_reason(url, bare_host=False))
    assert not flagged(url), (cls, url)


@pytest.mark.parametrize(
    ("host", "flag"),
    [
        ("169.254.169.254", True), ("[::1]:8080", True), ("::1", True), ("fe80::1%eth0", True),
        ("localhost:6379", True), ("user@localhost:6379", True), ("127.0.0.1 internal", True),
        ("redis", True), ("42", True), ("10.0.0.1/path", True), ("example.com@127.0.0.1", True),
        ("loc\u00adalhost", True), ("\uff11\uff12\uff17.0.0.1", True), ("file:/etc/passwd", True),
        ("example.com", False), ("api.example.com:443", False), ("8.8.8.8", False),
        ("2606:4700:4700::1111", False), ("example.com/127.0.0.1", False),
        ("https://example.com/", False),
        ("Note: the call is at 12:30", False),
        ("1. Definitions.", False),
        ("source, and configuration files.", False),
        ("2 apples", False),
        ("10.0.0.1 is the database", True), ("", False),
    ],
)  # fmt: skip
def test_named_fields_read_a_bare_host(host: str, flag: bool) -> None:
    assert (ssrf_reason(host, bare_host=True) is not None) is flag, host
    hits: list[RuleHit] = []
    v.check(NAMED, {"host": host}, {}, False, hits)
    assert (v.SSRF_INTERNAL in [h.id for h in hits]) is flag, host


def test_reasons_name_the_reading() -> None:
    assert ssrf_reason("http://example.com\\@127.0.0.1/", bare_host=False) == (
        "loopback address 127.0.0.1"
    )
    assert ssrf_reason("http://010.0.0.1/", bare_host=False) == (
        "internal address 10.0.0.1 (a leading zero read as decimal, as Java and older Go do)"
    )
    assert ssrf_reason("http://[2002:a00:1::1]/", bare_host=False) == (
        "internal address 10.0.0.1 (embedded in 2002:a00:1::1)"
    )
    assert ssrf_reason("file:/etc/passwd", bare_host=False) == (
        "URL scheme 'file' reaches local resources"
    )
    assert ssrf_reason("http://redis/", bare_host=False) == (
        "single-label host name 'redis' (resolved by the hosts file or search domains)"
    )
    assert ssrf_reason("http://local\u00adhost/", bare_host=False) == "local host name 'localhost'"


def test_ip_readings() -> None:
    assert [str(a) for a in ip_readings("010.0.0.1")] == ["8.0.0.1", "10.0.0.1"]
    assert [str(a) for a in ip_readings("08.0.0.1")] == ["8.0.0.1"]  # no octal reading
    assert [str(a) for a in ip_readings("0x7f.1")] == ["127.0.0.1"]
    assert [str(a) for a in ip_readings("fe80::1%eth0")] == ["fe80::1"]
    assert ip_readings("1" * 40) == ip_readings("0x" + "f" * 13) == ip_readings("١٢٧.0.0.1") == ()
    assert host_reason("[::1]") == "loopback address ::1"
    # DNS answers no name longer than 253 characters: a longer wildcard name resolves nowhere
    assert host_reason("a" * 230 + ".127.0.0.1.nip.io") is not None
    assert host_reason("a" * 240 + ".127.0.0.1.nip.io") is None
    assert host_reason("%6c%6f%63%61%6c%68%6f%73%74") == "local host name 'localhost'"


def test_hostile_values_decide_without_error() -> None:
    """Long, repetitive input of every shape the readings split on: a deterministic answer."""
    nasty = [
        "http://" + "@" * 100_000, "http://" + "a@" * 50_000 + "127.0.0.1",
        "http://" + "%41" * 50_000, "http://" + "\u00ad" * 100_000 + "localhost",
        "//" + "1." * 50_000, "http://" + ",".join(map(str, range(20_000))),
        "http://" + "1-" * 50_000 + "nip.io/", "\t" * 100_000 + "http://127.0.0.1/",
        "http://[" + ":" * 100_000, "http://" + "\uff10" * 100_000, "<" * 50_000 + "URL:",
        "http://" + "0x" * 50_000, "http://" + "\\" * 100_000 + "127.0.0.1",
    ]  # fmt: skip
    answers = [ssrf_reason(s, bare_host=b) for s in nasty for b in (False, True)]
    assert answers == [ssrf_reason(s, bare_host=b) for s in nasty for b in (False, True)]
    assert answers[2 * 1] is not None  # "a@a@...@127.0.0.1"
    assert answers[2 * 3] is not None  # soft hyphens then localhost
    assert answers[2 * 7] is not None  # tabs then a URL


# --- the hot path is the plain reading --------------------------------------------------------

_PIECES = [
    "http:", "HTTPS:", "ws:", "ftp:", "file:", "//", "/", "\\", "\\\\", "@", ":", ":80", "?", "#",
    "%", "%2e", "[", "]", "::1", ".", "127.0.0.1", "0x7f.1", "localhost", "example.com", "redis",
    "\t", "\n", " ", "\u017f", "\u212a", "\u00ad", "\uff11", ",", "<URL:", ">", "a", "9",
    "\x00", "\u3000", "gopher:", "myapp://", "url:", "<", "\\@", "#@", "?@",
]  # fmt: skip


@st.composite
def url_like(draw: st.DrawFn) -> str:
    """Plain URLs the shortcuts take, and near misses that they must leave to the readings."""
    scheme = draw(st.sampled_from(["http://", "HTTPS://", "ws:", "ftp:\\\\", "http:/", ""]))
    host = draw(st.text(alphabet=string.ascii_letters + string.digits + ".-", max_size=20))
    port = draw(st.sampled_from(["", ":", ":80", ":8080"]))
    rest = draw(st.lists(st.sampled_from(_PIECES), max_size=6))
    return scheme + host + port + "".join(rest)


def _same_as_plain(url: str) -> None:
    """The shortcuts decide as the plain readings; the anywhere-gate never hides a URL."""
    plain = ssrf._reason(ssrf._strip(url), False)
    assert ssrf_reason(url, bare_host=True) == ssrf._reason(ssrf._strip(url), True), url
    assert ssrf_reason(url, bare_host=False) == plain, url
    if plain is not None:
        assert looks_like_url(url) and ssrf._looks_like_url(url), url
        assert any(t in url for t in URL_TRIGGERS), url


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(url_like())
def test_shortcuts_give_what_every_reading_gives(url: str) -> None:
    _same_as_plain(url)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=8).map("".join))
def test_shortcuts_on_glued_pieces(url: str) -> None:
    _same_as_plain(url)


def test_shortcuts_on_random_glued_pieces() -> None:
    rng = random.Random(4)
    for _ in range(20_000):
        _same_as_plain("".join(rng.choices(_PIECES, k=rng.randint(1, 7))))


def test_shortcuts_are_taken() -> None:
    """The common cases really take the shortcuts (else the equivalence above proves little)."""
    for url in ("https://app.example.com/hooks", "http://10.0.0.1:8080/x", "http://a.b?c#d"):
        assert ssrf._PLAIN_URL.match(url), url
    for host in ("example.com", "10.0.0.1", "api.example.com/x"):
        assert ssrf._PLAIN_HOST.match(host), host
