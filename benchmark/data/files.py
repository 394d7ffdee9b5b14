"""Input files are read only when they are regular files: a FIFO blocks the reader forever and
/dev/zero never ends, and "no such file" for a directory sends the user looking in the wrong
place. ``file_problem`` says in a few words what is at a path instead."""

from __future__ import annotations

import os
import stat
from pathlib import Path

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
