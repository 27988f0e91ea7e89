"""A PNG of a held-snapshot run: offered and handled msg/s, p50/p99 latency and the message table's size
per 10 s window, with the held phase shaded.

    .venv/bin/python bench/held_snapshot_chart.py bench-results/held_snapshot.json docs/img/held_snapshot.png

Reads the JSON that ``bench/held_snapshot.py`` writes (``--out``). Needs matplotlib (pinned in
requirements-dev.txt; a benchmark tool only, the app never imports it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def draw(result: dict, out: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("matplotlib is missing: .venv/bin/pip install -r requirements-dev.txt") from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    rows = result["windows"]
    meta = result["meta"]
    x = [(r["from"] + r["to"]) / 2 for r in rows]
    fig, (top, mid, low) = plt.subplots(3, 1, sharex=True, figsize=(9, 7.5), height_ratios=[3, 3, 2])
    top.plot(x, [r["offered_per_s"] for r in rows], "--", color="grey", label="offered/s")
    top.plot(x, [r["handled_per_s"] for r in rows], "o-", color="tab:blue", label="handled/s", markersize=3)
    top.set_ylabel("messages / s")
    top.set_ylim(bottom=0, top=max(max(r["offered_per_s"] for r in rows), max(r["handled_per_s"] for r in rows)) * 1.2)
    mid.plot(x, [r["p99_ms"] for r in rows], "o-", color="tab:red", label="p99", markersize=3)
    mid.plot(x, [r["p50_ms"] for r in rows], "o-", color="tab:orange", label="p50", markersize=3)
    mid.set_ylabel("send → handled, ms (log)")
    mid.set_yscale("log")  # clean-phase milliseconds and backlog seconds on one axis
    low.plot(x, [r["queues_message"]["bytes"] / 2**20 for r in rows], "o-", color="tab:green", markersize=3,
             label="queues_message MB")
    low.set_ylabel("MB")
    low.set_ylim(bottom=0)
    low.set_xlabel("seconds (middle of each 10 s window)")
    held_from, held_to = meta["clean"], meta["clean"] + meta["held"]
    for ax in (top, mid, low):
        ax.axvspan(held_from, held_to, color="gold", alpha=0.25, label="snapshot held" if ax is top else None)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Held snapshot: {meta['workers']} mq_worker processes, {meta['rate']:.0f} msg/s offered, "
                 f"PostgreSQL {meta['postgres']}\n{meta['date']}, commit {meta['commit']}", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", type=Path, help="held_snapshot.py's JSON result")
    parser.add_argument("png", type=Path, nargs="?", default=Path("docs/img/held_snapshot.png"),
                        help="where to write the chart (default docs/img/held_snapshot.png)")
    opts = parser.parse_args()
    draw(json.loads(opts.json.read_text()), opts.png)
    print(opts.png)


if __name__ == "__main__":
    main()
