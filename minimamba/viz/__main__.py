"""``python -m minimamba.viz OUTDIR [NAME ...]``: write the registered figures as PNG files."""

from __future__ import annotations

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from minimamba.viz import load_all  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("outdir", type=pathlib.Path)
    parser.add_argument("names", nargs="*", help="only these figures (default: all)")
    args = parser.parse_args()
    figures = load_all()
    unknown = set(args.names) - set(figures)
    if unknown:
        parser.error(f"unknown figure(s) {sorted(unknown)}; known: {sorted(figures)}")
    args.outdir.mkdir(parents=True, exist_ok=True)
    for name in args.names or sorted(figures):
        fig = figures[name]()
        path = args.outdir / f"{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
