"""Resolving user-named dataset paths without ever leaving the data root (torch-free)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}  # the files an image folder's class folders hold


class DataPathError(ValueError):
    """A dataset path names something outside the data root, or is malformed."""


def resolve_under(
    root: str | Path, relative: str, what: str = "dataset path", within: str = "the data directory"
) -> Path:
    """Return ``root/relative`` resolved, refusing anything that escapes ``root``.

    Absolute paths, ``..`` components and symlinks that lead outside the root are
    rejected with :class:`DataPathError`, whose message calls the path ``what`` and the root
    ``within``. The path need not exist.
    """
    pure = check_relative(relative, what, within)
    base = Path(root).resolve()
    target = (base / pure).resolve()
    if not target.is_relative_to(base):
        raise DataPathError(f"{what} {relative!r} leads outside {within} (via a symlink)")
    return target


def check_relative(relative: str, what: str = "dataset path", within: str = "the data directory") -> PurePosixPath:
    """``relative`` as a path if it can only name something under a root (DataPathError if not):
    no absolute path, no ``..``, no backslash or NUL. Symlinks need the root: ``resolve_under``."""
    if not relative or relative.strip() != relative:
        raise DataPathError(f"{what} must be a non-empty relative path without surrounding spaces")
    if "\\" in relative or "\x00" in relative:
        raise DataPathError(f"{what} {relative!r} contains a backslash or NUL byte")
    pure = PurePosixPath(relative)
    if pure.is_absolute():
        raise DataPathError(f"{what} {relative!r} must be relative to {within}")
    if ".." in pure.parts:
        raise DataPathError(f"{what} {relative!r} must not contain '..'")
    return pure
