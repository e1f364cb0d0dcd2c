"""Atomic writes and folder locks (aubench.io)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from aubench.io import FolderInUseError, FolderLock, write_atomic

HOLD = """
import sys, time
from aubench.io import FolderLock
with FolderLock(sys.argv[1], "run folder"):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(folder):
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_write_atomic_replaces_the_file_whole(tmp_path):
    path = write_atomic(tmp_path / "a" / "b.txt", b"one")
    write_atomic(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["b.txt"]  # no temporary left


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    holder = _holder(tmp_path / "run")
    try:
        with pytest.raises(FolderInUseError) as err, FolderLock(tmp_path / "run", "run folder"):
            pass
        message = str(err.value)
        assert f"run folder {tmp_path / 'run'} is in use by pid {holder.pid}" in message
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = _holder(tmp_path / "run")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with FolderLock(tmp_path / "run", "run folder"):  # taken over at once
        text = (tmp_path / "run" / FolderLock.NAME).read_text()
        assert text.startswith(f"pid {os.getpid()} ")


def test_the_lock_is_released_on_exit_and_on_errors(tmp_path):
    with pytest.raises(KeyError), FolderLock(tmp_path):
        raise KeyError("boom")
    # the same process asking twice (a second open file) is refused too
    with FolderLock(tmp_path), pytest.raises(FolderInUseError), FolderLock(tmp_path):
        pass
    with FolderLock(tmp_path):  # and released again
        pass
