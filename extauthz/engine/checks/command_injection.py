"""Command injection: a value that starts a second command when the upstream puts it into a
shell command line (``sh -c``, ``cmd.exe /c``, PowerShell). Opt-in.

What the check looks for is a command *start* followed by something that runs: a separator
(``;``, ``&``, ``&&``, ``|``, ``||``, a newline), a substitution (``$(...)``, backticks,
``<(...)``), a subshell or brace group, then a known command (``whoami``, ``cat /etc/passwd``,
``/usr/bin/id``, ``/???/??t``, ``{cat,/etc/passwd}``, ``%COMSPEC%``, ``powershell -enc``).
Obfuscations that shells remove before running a word are removed first: quotes inside a word
(``c'a't``, ``c"a"t``), backslashes (``c\\at``), caret escapes (``w^hoami``), empty
expansions (``$@``, ``${u}``, ``$()``, empty backticks) and ``$IFS`` for a space; so are up to
two layers of percent-encoding when the value holds encoded operators (``%0a``, ``%3b``).

Prose is full of separators (``Tom & Jerry; cats | dogs``) and command-like words ("cat",
"sleep", "find"): a word that is also English fires only with an argument that looks like one
(``-la``, ``/etc/passwd``, ``$HOME``, a URL) or glued to its separator with nothing after it
(``;id;``). Markdown table cells (``| id |``) and code spans (``run `ls -la` first``) do not
fire; a backtick span fires when glued to other text (``x`id```, ```whoami`.evil.test``) or
when it is the whole value. A value with no shell metacharacter at all (``cat /etc/passwd``)
is a command only if the upstream runs the whole value, which nothing here can tell from
prose: it is not flagged (``docs/security.md``, "Detector coverage").

Every regex here has only bounded repeats or single-class repeats that cannot overlap a
match's first character, and none nested (``tests/engine/test_engine_detectors.py`` checks
this), so a search is linear in the value's length.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from ._kinds import Detector


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Command names in three groups. Strong: never prose, they fire after a command start
# whatever follows. Tools: named in technical prose ("we use python; curl is installed"),
# they need an argument-like token or nothing after them. Words: English or a field name
# ("cat", "type", "id"), they need an argument-like token, or to stand alone glued to their
# separator (";id;") or at the very end of the value ("; pwd"; English ones never so).
_STRONG = _names(
    "whoami uname hostname ifconfig ipconfig netstat nslookup wget ncat netcat socat "
    "busybox powershell pwsh powershell.exe cmd.exe netsh systeminfo sysinfo tasklist "
    "taskkill certutil bitsadmin wmic regsvr32 rundll32 mshta cscript wscript schtasks "
    "icacls vssadmin bcdedit msiexec mkfifo mknod useradd usermod userdel adduser crontab "
    "chmod chown chgrp setsid nohup pkexec iptables base64 base32 xxd hexdump tcpdump lsof "
    "strace printenv getent lastlog uptime killall pkill gunzip zcat bzip2 chattr iex iwr "
    "irm invoke-expression invoke-webrequest invoke-restmethod invoke-command start-process "
    "new-object get-content set-content remove-item downloadstring visudo sysctl passwd "
    "%comspec% ansible ansible-playbook ansible-galaxy ansible-vault ansible-console "
    "ansible-config ansible-doc chef-shell chef-run chef-vault cscli rmt rmt-tar rmt-dump "
    "lastlogin ssh-copy-id ssh-keygen uconv aptitude htop regedit bcdboot "
)
_TOOLS = _names(
    "curl bash sh zsh ksh csh tcsh dash fish python python2 python3 perl ruby php nodejs "
    "tclsh gcc c89 c99 awk gawk nawk sed grep egrep fgrep xargs vim nmap openssl sudo su "
    "doas ssh scp sftp rsync telnet tftp ftp nc gdb systemctl cmd rmdir mkdir unzip gzip xz "
    "tar zip tee umount shutdown reboot strings tac "
)
_WORDS = _names(
    "cat nl head tail more less find locate dd od rm cp mv ln touch echo printf sleep ping "
    "kill time timeout set type dir del copy move ren rd md for start call eval exec source "
    "export unset alias last who id pwd ls ps env host dig expect command service sort ed "
    "ex vi node java lua irb cc mount cd top "
)
_ENGLISH = frozenset(
    _names(
        "cat head tail more less find locate touch echo sleep kill time timeout set type copy move "
        "for start call source export last who host dig expect command service sort mount top"
    )
)  # never fire alone and spaced: prose ends with "; sleep" or "| more"
_STRONG_SET = frozenset(_STRONG)
_WORD_SET = frozenset(_WORDS)
# Windows commands that are words need their subcommand (net user, reg add, sc create).
_SUBCOMMANDS_SET = {
    "net": frozenset(
        ["user", "localgroup", "view", "use", "share", "group", "session", "start", "stop"]
    ),
    "reg": frozenset(["add", "query", "delete", "save", "export", "import", "load"]),
    "sc": frozenset(["create", "config", "start", "stop", "query", "delete"]),
}
_NAMES = frozenset((*_STRONG, *_TOOLS, *_WORDS))
_VERSIONED = re.compile(r"python[23]?\.\d{1,2}|(?:net|reg|sc)[ \t]{1,8}[a-z]{1,12}")
# A command-name token; which tokens are commands is a set lookup (``_known``), not a regex
# alternation of every name (which the regex engine would try one by one at every position).
_CMD = r"(?:(?:net|reg|sc)[ \t]{1,8}[a-z]{1,12}\b|\.(?:shell|system)\b|%comspec%|[a-z](?:[\w-]|\.(?=\w)){0,40})"


def _known(token: str) -> bool:
    """Whether a token matched by ``_CMD`` names a command (Windows ones need a subcommand)."""
    low = token.lower()
    if low in _NAMES:
        return low not in ("net", "reg", "sc")
    if low.startswith(("net", "reg", "sc")) and (" " in low or "\t" in low):
        return low.split()[1] in _SUBCOMMANDS_SET.get(low.split()[0], ())
    return low.startswith(".") or (_VERSIONED.fullmatch(low) is not None and "." in low)


# Where a new command starts: a separator, a substitution, a subshell or a brace group.
_SEP = r"(?:;|&&?|\|\|?|\n|\r)"
_OPEN = r"(?:\$\(|<\(|>\()"  # backticks: see _TICKS
# A path in front of a command name (/bin/cat, /usr/local/bin/curl, ./x, C:\Windows\...).
_PATH = r"(?:/(?:usr/)?(?:local/)?s?bin/|[a-z]:\\(?:windows\\)?(?:system32\\)?)?"
# What follows the name when it is a command: the end of the command, or an argument that
# looks like one (an option, a path, a variable, a quote, a URL, an address, a redirection).
_END = r"(?=[ \t]{0,64}(?:$|[;&|\n\r<>`)}#]))"
_ARG = (
    r"[ \t]{1,64}(?:--?[a-z]|[/~$`'\"\\<>]|\.{1,2}/|[a-z]:\\|%{1,2}[^\s%]"
    r"|\d{1,3}\.\d{1,3}\.\d|[a-z]{2,10}://|\d{1,6}[ \t]{0,8}(?:$|#)"
    r"|[a-z0-9-]{1,63}\.[a-z]{2,10}(?=[/:]|[ \t]{0,8}(?:$|[;&|\n\r<>`)])))"
)
# On a line of its own, version numbers and host names are prose ("gcc 4.9 is the default").
_LINE_ARG = (
    r"[ \t]{1,64}(?:--?[a-z]|[/~$`'\"<>|;&]|\.{1,2}/|[a-z]{2,10}://|[a-z]:\\|\d{1,6}[ \t]{0,8}$"
    r"|[a-z0-9-]{1,63}\.[a-z]{2,10}(?=[/:]|[ \t]{0,8}$))"
)
_FLAGS = re.IGNORECASE | re.MULTILINE
_TAIL = rf"[ \t]{{0,64}}(?P<open>[({{])?[ \t]{{0,8}}['\"]?{_PATH}(?P<cmd>{_CMD})['\"]?"
_FOLLOW = rf"(?:(?P<end>{_END})|{_ARG}|(?P<any>(?=[ \t])))"
# A command after a separator or in a substitution (which of them fires: ``_fires``).
_AFTER_SEP = re.compile(rf"(?P<sep>;|&&?|\|\|?|{_OPEN}){_TAIL}{_FOLLOW}", _FLAGS)
# After a newline, prose wraps its lines: a lower-case command (Unix shells are case
# sensitive) with an argument, or alone on its line.
_AFTER_LINE = re.compile(
    rf"(?P<sep>[\n\r])(?-i:{_TAIL})"
    rf"(?:(?P<end>(?=[ \t]{{0,64}}(?:$|[;&|<>])))|{_LINE_ARG}|(?P<any>(?=[ \t])))",
    _FLAGS,
)
# Any command after a separator, known or not, when it takes an option and its line ends
# soon after (";perf --version", ";date -f secrets.txt", "|flock -u / whoami"), and commands
# chained with glued separators ("cd /;cd etc;column passwd").
_OPTIONED = re.compile(
    r"(?:;|&&|\|\|?)[ \t]{0,8}['\"]?[a-z][\w.-]{1,30}['\"]?[ \t]{1,8}--?[a-z][\w-]{0,30}"
    r"(?:[ \t]{0,8}$|[ \t]{1,8}(?:--?[a-z]|/|\$|\d|[\w-]{0,30}[.@=][\w.@=-]{1,40}[ \t]{0,8}$))"
    r"|(?:;|&&|\|\|?)[ \t]{0,8}[a-z][\w.-]{1,30}[ \t]{1,8}-[a-z][ \t]{1,8}[\w.@=-]{1,40}[ \t]{0,8}$",
    _FLAGS,
)
_CHAINED = re.compile(r";[a-z]{1,20}(?:[ \t]{1,8}[\w./-]{1,40}){0,3};[a-z]", _FLAGS)
# Any executable by path after a command start (/usr/bin/id, /???/??t, /bi?/ca*).
_PATH_START = re.compile(
    rf"(?:{_SEP}|{_OPEN})[ \t]{{0,64}}[({{]?[ \t]{{0,8}}"
    r"(?:/(?:usr/)?(?:local/)?s?bin/[a-z?*\[]|/[a-z?*\[\]!]{0,8}[?*\[][a-z?*\[\]!]{0,8}/)",
    _FLAGS,
)
# Brace expansion as the command: {cat,/etc/passwd}, {ls,-la}.
_BRACE = re.compile(rf"(?<![\w.-])\{{,?{_PATH}(?P<cmd>{_CMD}),(?:[-/$~'\"\w.#]|\}})", _FLAGS)
# Shellshock's function definition, a reverse shell's device, a here-string into a command.
_SHAPES = re.compile(
    r"\(\)[ \t]{0,8}\{[ \t]{0,8}:[ \t]{0,8};[ \t]{0,8}\}|/dev/(?:tcp|udp)/[\w.]"
    r"|\w<<<[ \t]{0,8}['\"\w]|-e[ \t]{1,8}(?:/bin/)?(?:ba)?sh\b|<!--#[ \t]{0,8}exec\b"
    r"|\(\)[ \t]{0,8}\{[^{}]{0,80}[|&][^{}]{0,80}\}[ \t]{0,8}[;\w]"
    r"|\$\{?SHELL\}?[ \t]{1,8}-c\b|\r\n(?-i:MAIL FROM|RCPT TO)[ \t]{0,8}:",
    _FLAGS,
)
# Expansions used only to hide a command: $IFS for a space, ${PATH:0:1} for a slash.
# Expansions used only to hide a command: $IFS for a space, ${PATH:0:1} for a slash, a
# special parameter or an empty expansion inside a word (c$@at, w$()hoami), variables glued
# into a command (;$c1$c2), a variable run as a command with arguments (&&$c $a).
_EVASION = re.compile(
    r"\$\{?IFS\b|\$\{[a-z_]\w{0,30}:\d{1,3}(?::\d{1,3})?\}|\$\{[a-z_]\w{0,30}[#%]{1,2}[^}]{0,30}\}"
    r"|[a-z]\$(?:[@*!?_$-](?=[a-z/])|\(\)|\{\w{0,20}\})|[a-z][<>]\(\)(?=[a-z])"
    r"|(?:;|&&|\|\|?)[ \t]{0,8}\$\{?[a-z_]\w{0,30}\}?(?:\$|[ \t]{1,8}[$/-])",
    _FLAGS,
)
_REDIRECT = re.compile(
    r"(?:^|[ \t;&|0-9])(?:>{1,2}|<)[ \t]{0,8}(?:/(?:etc|dev|tmp|proc|var|bin|root|home|usr|opt)/"
    r"|~/|\$\{?HOME\b)|[0-9]?>&[ \t]{0,8}/dev/|[a-z](?:>{1,2}|<)(?:/(?:etc|dev|tmp|proc|root)/|~/)",
    _FLAGS,
)
# A backtick span (not a reStructuredText ``double`` one): fires when glued to other text or
# when it is the whole value.
_TICKS = re.compile(r"(?<!`)`(?P<body>[^`\n]{1,200})`(?!`)")
_GNU_QUOTE = re.compile(r"'(?=[\s,.;:)]|$)")
_TICK_CMD = re.compile(rf"[ \t]{{0,8}}{_PATH}(?P<cmd>{_CMD})(?:{_END}|{_ARG})", _FLAGS)
# Obfuscation a shell removes from a word before running it (see the module docstring).
_STRIP = re.compile(
    r"""(?<=\w)(?:\$\{[a-z_]\w{0,30}\}|\$[@*]|\$\(\)|``|[\\^])(?=[\w/])"""
    r"""|(?<=[;&|`(\s])(?:\\|''|"")(?=[a-z])""",
    re.I,
)
# Quotes that pair up inside one word (c'a't, wh""oami): an apostrophe ("don't") does not.
_PAIRED = re.compile(r"""(?<=\w)(['"])(\w{0,20})\1(?=[\w/])""")
_CELL = re.compile(r"\|[ \t]{1,64}[\w.-]{1,40}[ \t]{1,64}(?=\|)")  # a markdown table cell
_ENCODED = re.compile(r"%(?:25){0,2}(?:0a|0d|3b|7c|26|60|24|3c|3e|7b|28)", re.I)
_META_CHARS = ";&|`$\n\r<>{"
_META = re.compile(f"[{re.escape(_META_CHARS)}]")


def command_reason(value: str) -> str | None:
    """Why ``value`` would start a command in a shell command line, or None."""
    if "%" in value and _ENCODED.search(value):
        decoded = value
        for _ in range(3):  # bounded: at most triple encoding is unwrapped
            step = unquote(decoded, errors="replace")
            if step == decoded:
                break
            decoded = step
        why = _reason(decoded)
        if why is not None:
            return f"{why} (percent-encoded)"
    return _reason(value)


def _reason(value: str) -> str | None:
    if not _META.search(value):
        return None
    why = _shell_reason(value)
    if why is None:
        plain = _deobfuscated(value)
        if plain != value:
            why = _shell_reason(plain)
    return why


def _deobfuscated(value: str) -> str:
    spaced = value.replace("${IFS}", " ").replace("$IFS", " ") if "IFS" in value else value
    unquoted = _PAIRED.sub(r"\2", spaced) if "'" in spaced or '"' in spaced else spaced
    return _STRIP.sub("", unquoted)


def _shell_reason(text: str) -> str | None:
    if "|" in text and "| " in text:
        text = _CELL.sub("|", text)  # a markdown table's "| id |" is a cell, not a pipe
    for regex, needs in ((_AFTER_SEP, ";&|()"), (_AFTER_LINE, "\n\r")):
        if any(c in text for c in needs):  # str tests, far cheaper than a regex search
            for m in regex.finditer(text):
                if _fires(text, m):
                    return f"shell command {m.group('cmd')!r} after {m.group('sep')!r}"
    separated = any(c in text for c in ";&|\n\r")
    if separated and "/" in text and _PATH_START.search(text):
        return "executable path after a shell separator"
    if "`" in text:
        for m in _TICKS.finditer(text):
            why = _backtick(text, m)
            if why is not None:
                return why
    if "{" in text:
        for m in _BRACE.finditer(text):
            if _known(m.group("cmd")):
                return f"brace expansion running {m.group('cmd')!r}"
    for regex, why, needs in (
        (_SHAPES, "shell payload", "(/<-\r"),
        (_EVASION, "shell expansion used to hide a command", "$<>"),
        (_REDIRECT, "shell redirection to a system path", "<>"),
        (_OPTIONED, "command with options after a shell separator", ";&|" if separated else ""),
        (_CHAINED, "commands chained with ';'", ";"),
    ):
        if any(c in text for c in needs):
            found = regex.search(text)
            if found is not None:
                return f"{why} {found.group(0).strip()[:40]!r}"
    return None


def _fires(text: str, m: re.Match[str]) -> bool:
    """Whether a command name matched after a command start is a command (see the groups)."""
    cmd = m.group("cmd").lower()
    if not _known(cmd):
        return False
    sep = m.group("sep")
    if cmd in _STRONG_SET or cmd[:1] == "." or " " in cmd or "\t" in cmd:
        return True  # never prose: a strong name, a SQLite dot command, net/reg/sc + subcommand
    if sep in ("$(", "<(", ">("):
        return (
            m.groupdict().get("any") is None or cmd not in _WORD_SET
        )  # "$(cat file)", not "$(this)"
    if m.groupdict().get("any") is not None:
        return False  # a plain word follows: "; python is installed", "| cat food"
    alone = m.group("end") is not None
    if sep == "|" and alone:
        before = text[m.start() - 1 : m.start()]
        if _enumerated(text, m.start()):
            return False  # "json|yaml|python": an enumeration, not a pipe into python
        if before in ("", " ", "\t") and text[m.end() : m.end() + 2].rstrip() in ("|", "|_"):
            return False  # "|python|": a reStructuredText substitution
    if not alone or cmd not in _WORD_SET:
        return True  # an argument that looks like one, or a tool alone
    if m.group("open"):
        return True  # a subshell or group around the command: "; (id)", "&&{ls;}"
    if text[m.end("sep") : m.end("sep") + 1] in (" ", "\t", ""):
        # "Notes; ls." is prose; "; pwd" ending the value or its command is not, unless the
        # word is English ("; sleep").
        rest = text[m.end() :].lstrip(" \t")
        ends = ("", ";", "&", "|") if sep not in "\n\r" else (";", "&", "|")
        return cmd not in _ENGLISH and rest[:1] in ends
    # Glued and alone (";id;", "|ls"); ending the value after a lone "&" only in lower case
    # ("x&id"), since abbreviations end prose ("R&D", "A&W").
    return sep != "&" or text[m.end() :].strip() != "" or m.group("cmd").islower()


def _enumerated(text: str, bar: int) -> bool:
    """Whether a plain word (letters only, up to 40) stands right before the "|" at ``bar``."""
    start = bar
    while start > 0 and bar - start < 40 and text[start - 1].isalpha():
        start -= 1
    return start < bar and (start == 0 or text[start - 1] in " \t|,(/")


def _backtick(text: str, m: re.Match[str]) -> str | None:
    body = m.group("body")
    if _GNU_QUOTE.search(body):
        return None  # `like this' is how GNU texts quote, not a substitution
    before = text[m.start() - 1 : m.start()]
    after = text[m.end() : m.end() + 2]
    glued = before.isalnum() or (before in ("=", ";", "&", "|", "$", "{") and before != "")
    glued = glued or text[m.start() - 2 : m.start()] == "$("
    # "`SET`s" is a plural in markdown; "`whoami`.evil.test" or "`id`x" are not.
    glued = glued or (after[:1].isalnum() and not (after[:1] == "s" and not after[1:].isalnum()))
    glued = glued or (after[:1] == "." and after[1:2].isalnum())
    whole = not text[: m.start()].strip() and not text[m.end() :].strip()
    if not (glued or whole):
        return None
    c = _TICK_CMD.match(body)
    if c is None or not _known(c.group("cmd")):
        return None
    return f"backtick command {c.group('cmd')!r}"


EXPLAIN = "a string that would run a command if the upstream passed it to a shell"
TRIGGERS = (*_META_CHARS, "%0", "%2", "%3", "%6", "%7")
CHECK = Detector("commandInjection", "vulnerability.commandInjection", False, EXPLAIN,
                 strings=command_reason, string_triggers=TRIGGERS)  # fmt: skip
