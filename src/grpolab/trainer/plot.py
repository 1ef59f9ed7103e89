"""A PNG of a run's curves from its metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

PANELS = [
    ("reward", "reward"),
    ("accuracy", "accuracy (train samples)"),
    ("eval/pass@1", "held-out pass@1"),
    ("entropy", "entropy (nats / token)"),
    ("kl", "KL to reference"),
    ("response_length", "response length (tokens)"),
]


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_run(run_dir: Path) -> Path | None:
    """Write ``run_dir/curves.png``; returns its path (None when matplotlib is missing or nothing is logged)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    records = read_metrics(run_dir / "metrics.jsonl")
    panels = [(key, title) for key, title in PANELS if any(key in r for r in records)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.8), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels, strict=True):
        points = [(r["step"], r[key]) for r in records if key in r]
        ax.plot(*zip(*points, strict=True), marker="o" if key.startswith("eval/") else None, lw=1.2)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(run_dir.name, fontsize=9)
    fig.tight_layout()
    out = run_dir / "curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
