"""``python -m benchmark.list models|data|protocols|decoders`` (``make list``): what there is to
name on the command line, one line each (benchmark/run/catalog.py); no argument: all four."""

from __future__ import annotations

import sys

from benchmark.run.catalog import KINDS, LINES, aligned
from benchmark.run.schema import nearest


def main(argv: list[str]) -> int:
    kinds = argv or list(KINDS)
    for kind in kinds:
        if kind not in KINDS:
            near = nearest(kind, KINDS)
            sys.exit(f"error: {kind}: not one of {', '.join(KINDS)}"
                     + (f"; did you mean {near}?" if near else ""))
    for kind in kinds:
        if len(kinds) > 1:
            print(f"# {kind}")
        print(aligned(LINES[kind]()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
