"""Input files are read only when they are regular files: a FIFO blocks the reader forever and
/dev/zero never ends, and "no such file" for a directory sends the user looking in the wrong
place. ``file_problem`` says in a few words what is at a path instead. Output files are written whole
or not at all (``atomic_write``) and shared ones changed under a lock (``file_lock``)."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from filelock import FileLock, Timeout

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def file_problem(path: str | Path) -> str | None:
    """None for a regular file (or a symlink to one); else what is there, e.g.
    ``"is a directory, not a file"`` or ``"no such file"``."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "is a broken symlink" if os.path.islink(path) else "no such file"
    except OSError as err:  # a symlink loop, a folder on the way that cannot be read, ...
        return f"cannot be read: {err.strerror}"
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return f"is {kind}, not a file"


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write) -> Path:
    """Call ``write(tmp_path)`` and rename the result onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are for everyone to read
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


@contextlib.contextmanager
def file_lock(path: Path, timeout_s: float = 600.0):
    """An exclusive lock (``path`` + ``.lock``) around a read-change-rewrite of a shared file:
    the jobs of a sweep or a SLURM array finishing together on a shared filesystem each re-read
    the file inside it, so none drops another's rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path) + ".lock", timeout=timeout_s)
    try:
        lock.acquire()
    except Timeout:
        raise OSError(f"{path}.lock: still locked by another run after {timeout_s:g} s "
                      "(delete the lock file if no run is writing there)") from None
    try:
        yield
    finally:
        lock.release()
