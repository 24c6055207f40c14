"""Command injection: a shell separator, substitution, backtick or redirection followed by
something that runs. Anchored regexes without nested quantifiers (linear time). Opt-in."""

from __future__ import annotations

import re

from ._kinds import Detector

# Commands that are not English words: a hit after a shell separator whatever follows.
_RARE_COMMANDS = (
    "wget|curl|nc|ncat|netcat|bash|sh|zsh|ksh|csh|dash|whoami|uname|chmod|chown|"
    "nslookup|powershell|pwsh|cmd\\.exe|cmd|telnet|python3?|perl|ruby|php|base64|busybox|"
    "ifconfig|ipconfig|passwd|useradd|crontab|mkfifo|socat|xterm|tftp|scp|sudo|su"
)
# Commands that are also words ("cat", "id"): a hit only with an argument that looks like one.
_WORD_COMMANDS = (
    "cat|ls|rm|id|echo|ping|sleep|kill|touch|find|head|tail|more|less|env|set|dir|type|"
    "ps|nohup|eval|exec|export|cp|mv|tee|xargs|awk|sed|grep|sort|nl|od|dd"
)
_SEP = r"(?:;|&&?|\|\|?|\n|\r)"
_CMD_RARE = re.compile(rf"{_SEP}[ \t]*(?:{_RARE_COMMANDS})(?=$|[ \t;&|<>)\n])")
_CMD_WORD = re.compile(
    rf"{_SEP}[ \t]*(?:{_WORD_COMMANDS})"
    r"(?:[ \t]*$|[ \t]*[|<>]|[ \t]+(?:-{1,2}[A-Za-z]|/|~|\$|\.{1,2}/|\d+[ \t]*(?:$|[;&|])|[a-z]+://))"
)
_SUBST = re.compile(r"\$\([ \t]*[a-z_./]|\$\{[A-Za-z_][A-Za-z0-9_]*[}:#%/]")
# In backticks: a rare command with anything, or a word command with an argument-like token
# (developer prose quotes words like `id` or `cat` all the time).
_BACKTICK = re.compile(
    rf"`[ \t]*(?:(?:{_RARE_COMMANDS})\b[^`]{{0,200}}"
    rf"|(?:{_WORD_COMMANDS})[ \t]+(?:-{{1,2}}[A-Za-z]|/|~|\$)[^`]{{0,200}})`"
)
_REDIRECT = re.compile(r"(?:^|[ \t;&|])(?:>>?|<)[ \t]*/(?:etc|dev|tmp|proc|var|bin)/")
_META_CHARS = ";&|`$\n\r<>"  # each pattern above needs one of them
_META = re.compile(f"[{re.escape(_META_CHARS)}]")


def command_reason(value: str) -> str | None:
    if not _META.search(value):
        return None
    for regex, why in (
        (_SUBST, "command substitution"),
        (_BACKTICK, "backtick command"),
        (_CMD_RARE, "shell separator followed by a command"),
        (_CMD_WORD, "shell separator followed by a command with arguments"),
        (_REDIRECT, "shell redirection to a system path"),
    ):
        if regex.search(value):
            return why
    return None


EXPLAIN = "a string that would run a command if the upstream passed it to a shell"
CHECK = Detector("commandInjection", "vulnerability.commandInjection", False, EXPLAIN,
                 strings=command_reason, string_triggers=tuple(_META_CHARS))  # fmt: skip
