"""``python -m minimamba info``: versions, device, and which scan backends are available here."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minimamba", description=__doc__)
    parser.add_argument("command", nargs="?", default="info", choices=["info"], help="what to print")
    parser.parse_args(argv)
    from minimamba.env import info

    print(info())
    return 0


if __name__ == "__main__":
    sys.exit(main())
