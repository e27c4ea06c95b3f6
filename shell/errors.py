"""What a user is told when ratchet refuses an input: one line naming the file and line, or the
key and value, and what is allowed. Anything else that goes wrong is a bug (see shell.cli)."""

from __future__ import annotations

__all__ = ["BadFile", "UserError", "one_line"]

_LONGEST = 400  # characters of one message; a longer one is cut (a whole bad line is no help)


def one_line(text: str, limit: int = _LONGEST) -> str:
    """`text` on one line: line breaks and other control characters escaped, cut to `limit`."""
    if text.isprintable() and len(text) <= limit:
        return text
    shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


class UserError(Exception):
    """An input or a setting ratchet refuses; its message is the one line the user sees."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


class BadFile(UserError):
    """A whole file refused (not gzip, cut short, not the expected header): no line of it is
    used, whatever --skip-bad-lines says."""

    def __init__(self, path: object, reason: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {reason}")
        self.path, self.reason, self.line = str(path), reason, line
