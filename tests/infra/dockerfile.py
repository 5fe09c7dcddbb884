"""Just enough of Docker's file formats to check infra/Dockerfile without Docker.

``instructions`` reads a Dockerfile the way the builder does: comments and
blank lines dropped, backslash continuations joined, ``${ARG}`` / ``$ARG``
replaced by the ARG defaults in scope (global ARGs before FROM only reach FROM
lines unless redeclared in the stage, as in Docker). ``ignored`` answers whether
.dockerignore keeps a path out of the build context: patterns in order, the last
match wins, ``!`` re-includes, ``**`` spans folders, and a pattern that matches
a folder covers everything under it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class Instruction:
    """One instruction, keyword upper-cased, arguments with ARGs substituted."""

    keyword: str
    args: str
    line: int  # where it starts, 1-based


def instructions(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    global_args: dict[str, str] = {}
    stage_args: dict[str, str] | None = None  # None: before the first FROM
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line, pending = pending + stripped, ""
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        scope = global_args if stage_args is None or keyword == "FROM" else stage_args
        rest = _substitute(rest.strip(), scope)
        if keyword == "FROM":
            stage_args = {}
        elif keyword == "ARG":
            name, eq, default = rest.partition("=")
            target = global_args if stage_args is None else stage_args
            if eq:
                target[name] = default.strip('"')
            elif stage_args is not None and name in global_args:
                target[name] = global_args[name]
        out.append(Instruction(keyword, rest, start))
    return out


def _substitute(text: str, scope: dict[str, str]) -> str:
    return _VAR.sub(lambda m: scope.get(m.group(1) or m.group(2), m.group(0)), text)


def commands(run: Instruction) -> list[str]:
    """The shell commands of a RUN, split at ``&&`` and ``;``."""
    return [c.strip() for c in re.split(r"&&|;", run.args) if c.strip()]


def read_patterns(path: Path) -> list[str]:
    lines = (ln.strip() for ln in path.read_text().splitlines())
    return [ln for ln in lines if ln and not ln.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether a context-relative path (``a/b/c.py``) is left out of the build context."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    out = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip().strip("/")
        regex = _glob(body)
        if any(regex.fullmatch(p) for p in prefixes):
            out = not negate
    return out


def _glob(pattern: str) -> re.Pattern[str]:
    """A Go filepath.Match pattern, with Docker's ``**``, as a regex over a path."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            body = "^" + body[1:] if body.startswith("^") else body
            out, i = out + f"[{body}]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)
