"""Plots (matplotlib, drawn off-screen)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def robustness_plot(results: list[dict[str, Any]], path: Path) -> None:
    """Accuracy against severity, a line per degrader, a panel per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    for ax, res in zip(axes[0], results):
        for name, accs in res["degraders"].items():
            ax.plot(range(len(accs) + 1), [res["clean"], *accs], marker="o", ms=3, label=name)
        ax.set_xlabel("severity (0 = clean)")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1)
        ax.set_title(res["run"], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
