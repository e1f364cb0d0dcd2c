"""Atomic file writes and folder locks, shared by every module that writes results, models,
exports or figures."""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from pathlib import Path


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``, so a
    reader (or an interrupted run) never sees a half-written file. Missing parent folders are
    created. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class FolderInUseError(FileExistsError):
    """Another live process holds the lock of a run or model folder."""


class FolderLock:
    """An exclusive lock on a folder that one run writes, held for a ``with`` block.

    The lock is an OS advisory lock (``fcntl.flock``) on ``FOLDER/.aubench.lock``, which records
    the holder's pid and start time. The kernel drops the lock when its process dies, however it
    dies, so a crashed run leaves no stale lock behind: the next run takes it over. A second
    process that wants the folder while the first lives gets :class:`FolderInUseError` naming the
    folder and the holder's pid. ``what`` names the folder in that message ("run folder",
    "model folder"); ``name`` is the lock file's (``.aubench*.lock``: separate shards of one run
    lock separate files). The lock file stays in the folder (hidden; checks for an empty folder
    ignore it, see :func:`is_empty_folder`).
    """

    NAME = ".aubench.lock"

    def __init__(self, folder: str | os.PathLike, what: str = "folder", name: str = NAME) -> None:
        self.folder = Path(folder)
        self.what = what
        self.name = name
        self._handle = None

    def __enter__(self) -> FolderLock:
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"{self.what} {self.folder} exists and is not a directory")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle = open(self.folder / self.name, "a+")  # held until __exit__
        except PermissionError as err:
            raise PermissionError(
                f"cannot write to {self.what} {self.folder}: {err.strerror}"
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise FolderInUseError(
                f"{self.what} {self.folder} is in use by {holder}; wait for it to finish, or "
                "choose another folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the file releases the lock
            self._handle = None


def is_empty_folder(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but possibly :class:`FolderLock` files."""
    return not any(not _is_lock_file(path.name) for path in folder.iterdir())


def _is_lock_file(name: str) -> bool:
    return name.startswith(".aubench") and name.endswith(".lock")
