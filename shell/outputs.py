"""Where ratchet writes: never over one of its own inputs (even through a link), into
directories it creates when missing, under file names that stay inside the directory given."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from shell.errors import UserError

__all__ = [
    "file_names",
    "prepare_directory",
    "prepare_file",
    "refuse_inputs",
    "same_file",
    "temp_beside",
]


def same_file(a: Path, b: Path) -> bool:
    """True when `a` and `b` name one file: the same device and inode (a symbolic or a hard
    link), or the same resolved path."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except (OSError, ValueError):  # ValueError: a NUL in the name
        pass
    else:
        if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
            return True
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError, ValueError):  # RuntimeError: a symlink loop
        return False


def temp_beside(path: Path) -> Path:
    """The temporary file an atomic write of `path` goes through before its rename."""
    return path.with_name(f".{path.name}.tmp")


def refuse_inputs(outputs: Iterable[tuple[str, Path]], inputs: Iterable[Path]) -> None:
    """UserError when an output (or the temporary file it is written through) is one of the
    inputs: writing it would destroy what is being read. `outputs` are (option, path)."""
    sources = list(inputs)
    for label, out in outputs:
        for candidate in (out, temp_beside(out)):
            for source in sources:
                if same_file(candidate, source):
                    raise UserError(
                        f"{label} {out} would overwrite the input {source}: write it somewhere else"
                    )


def prepare_file(path: Path, label: str) -> None:
    """Make sure `path` can be written: its missing parent directories are created; UserError
    in one line when that is impossible (a file in the way, no permission) or when `path` is a
    directory."""
    if path.is_dir():
        raise UserError(f"{label} {path} is a directory: give a file name")
    prepare_directory(path.parent, label, of=path)


def prepare_directory(path: Path, label: str, *, of: Path | None = None) -> None:
    """Create directory `path` with its parents when missing; UserError in one line when a file
    is in the way or it cannot be written."""
    what = f"{label} {of if of is not None else path}"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{what}: {_blocker(path)} is a file, not a directory") from None
    except NotADirectoryError:
        raise UserError(f"{what}: {_blocker(path)} is a file, not a directory") from None
    except OSError as exc:
        raise UserError(f"{what}: cannot create the directory {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{what}: the directory {path} is not writable")


def _blocker(path: Path) -> Path:
    """The first existing non-directory on the way to `path`."""
    for part in reversed([path, *path.parents]):
        if part.exists() and not part.is_dir():
            return part
    return path


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_LONGEST_NAME = 100  # characters before the suffix; file systems allow 255 bytes


def file_names(symbols: Iterable[str], suffix: str) -> dict[str, str]:
    """A file name for each symbol: letters, digits, `.`, `_` and `-` only, never hidden, `..`
    or an option, at most ~120 characters, distinct even on a case-insensitive file system. A
    symbol that had to change (or would collide) gets a short hash of itself appended, so its
    name is the same from run to run."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for symbol in sorted(set(symbols)):
        stem = _UNSAFE.sub("_", symbol).lstrip(".-")[:_LONGEST_NAME]
        if stem != symbol or not stem or stem.casefold() in taken:
            digest = hashlib.sha256(symbol.encode("utf-8", "surrogatepass")).hexdigest()
            stem = f"{stem or 'symbol'}-{digest[:10]}"
        n = 1
        name = stem
        while name.casefold() in taken:
            n += 1
            name = f"{stem}-{n}"
        taken.add(name.casefold())
        names[symbol] = name + suffix
    return names
