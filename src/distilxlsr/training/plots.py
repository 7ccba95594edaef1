"""The loss curve of a run, drawn from its metrics.jsonl into RUN/loss.png."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_loss(records: list[dict], path: Path) -> bool:
    """Total loss per step and each distilled layer's term (or each pretraining stage's loss);
    False when there is nothing to draw yet."""
    records = [r for r in records if "loss" in r and "step" in r]
    if not records:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    stages = sorted({r["stage"] for r in records if "stage" in r})
    if stages:
        for stage in stages:
            part = [r for r in records if r.get("stage") == stage]
            ax.plot([r["step"] for r in part], [r["loss"] for r in part], label=f"stage {stage}")
    else:
        ax.plot([r["step"] for r in records], [r["loss"] for r in records], "k", label="total")
        for name in records[-1].get("layers", {}):
            steps = [r["step"] for r in records if name in r.get("layers", {})]
            values = [r["layers"][name] for r in records if name in r.get("layers", {})]
            ax.plot(steps, values, linewidth=0.8, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"loss ({path.parent.name})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".tmp-{path.name}")
    fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    tmp.replace(path)
    return True
