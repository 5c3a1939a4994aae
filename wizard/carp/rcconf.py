"""Reading FreeBSD's shell-variable files (/etc/rc.conf, /boot/loader.conf) as sh assigns them.

sysrc(8) reads a variable by sourcing the file in a sub-shell (`f_sysrc_get`), and rc does the same at boot, so
the one behaviour to match is sh's: quotes and backslashes as sh removes them, `#` a comment only where a word
would start, a quoted value may span lines, `$NAME` and `${NAME}` expand in double quotes and bare words, the last
assignment wins, and `NAME=value command` sets nothing (the assignment is that command's alone). A file sh cannot
parse (an unterminated quote) is refused whole, as sh stops reading it and sysrc then reads nothing from it.
Command substitution is never run: `$(...)` and backquotes stay as text. tests/unit/test_rcconf.py holds this
to /bin/sh, and the lab's sysrc (which sources the file with sh) to the same cases.
"""

from __future__ import annotations

import re

ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")
EXPANSION = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
BLANK = " \t"
ENDS_WORD = " \t\n;&|<>()"
DQUOTE_ESCAPES = '$`"\\'


class RcSyntaxError(ValueError):
    """The file does not parse as sh: sysrc reads nothing from it and rc stops at it."""


class _Reader:
    """sh's words, one simple command at a time, over the whole text (a quote may span lines)."""

    def __init__(self, text: str, values: dict[str, str]) -> None:
        self.text, self.i, self.values = text, 0, values

    def line(self) -> int:
        return self.text.count("\n", 0, self.i) + 1

    def error(self, what: str) -> RcSyntaxError:
        return RcSyntaxError(f"line {self.line()}: {what}")

    def expand(self, chunk: str) -> str:
        return EXPANSION.sub(lambda m: self.values.get(m.group(1) or m.group(2), ""), chunk)

    def single(self) -> str:
        end = self.text.find("'", self.i + 1)
        if end < 0:
            raise self.error("unterminated quoted string (')")
        chunk, self.i = self.text[self.i + 1:end], end + 1
        return chunk

    def double(self) -> str:
        out: list[str] = []
        run: list[str] = []
        i = self.i + 1
        while i < len(self.text) and self.text[i] != '"':
            c = self.text[i]
            if c == "\\" and i + 1 < len(self.text) and self.text[i + 1] in DQUOTE_ESCAPES + "\n":
                out.append(self.expand("".join(run)) + ("" if self.text[i + 1] == "\n" else self.text[i + 1]))
                run, i = [], i + 2
                continue
            run.append(c)
            i += 1
        if i >= len(self.text):
            raise self.error('unterminated quoted string (")')
        self.i = i + 1
        return "".join(out) + self.expand("".join(run))

    def word(self) -> str:
        out = []
        while self.i < len(self.text) and self.text[self.i] not in ENDS_WORD:
            c = self.text[self.i]
            if c == "'":
                out.append(self.single())
            elif c == '"':
                out.append(self.double())
            elif c == "\\":
                nxt = self.text[self.i + 1:self.i + 2]
                out.append("" if nxt == "\n" else nxt)
                self.i += 2
            else:
                start = self.i
                while self.i < len(self.text) and self.text[self.i] not in ENDS_WORD + "'\"\\":
                    self.i += 1
                out.append(self.expand(self.text[start:self.i]))
        return "".join(out)

    def command(self) -> list[tuple[str | None, str]]:
        """The next simple command's words as (assigned name or None, value); [] at the end of the text."""
        words: list[tuple[str | None, str]] = []
        while self.i < len(self.text):
            c = self.text[self.i]
            if c in BLANK:
                self.i += 1
            elif c == "#":
                end = self.text.find("\n", self.i)
                self.i = len(self.text) if end < 0 else end
            elif c in "\n;":
                self.i += 1
                if words:
                    return words
            elif c in "&|<>()":
                self.i += 1
                words.append((None, c))  # not a plain assignment statement: it sets nothing here
            else:
                m = ASSIGN.match(self.text, self.i)
                if m and all(name is not None for name, _ in words):
                    self.i = m.end()
                    words.append((m.group(1), self.word()))
                else:
                    words.append((None, self.word()))
        return words


def parse_rc(text: str) -> dict[str, str]:
    """Each variable's value as sh would assign it when sourcing `text`; RcSyntaxError if sh could not."""
    values: dict[str, str] = {}
    reader = _Reader(text, values)
    while words := reader.command():
        if all(name is not None for name, _ in words):  # only assignments: they stay in the shell
            for name, value in words:
                values[name] = value  # type: ignore[index]
    return values
