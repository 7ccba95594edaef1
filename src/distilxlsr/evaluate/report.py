"""Evaluation reports: results.md (languages x models, then the bootstrap statistics: tiers,
comparisons, test sizes), per.png (grouped bars) and, with --similarity, similarity.md /
similarity.png (CKA of each student layer with its teacher layer)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from distilxlsr.evaluate.records import metric_name  # noqa: E402
from distilxlsr.evaluate.stats import describe_resampling  # noqa: E402


def _cell(model: dict, lang: str | None) -> str:
    if lang is None:
        value, std = model["per_mean"], model.get("per_mean_std")
    else:
        value, std = model["per"][lang], model.get("per_std", {}).get(lang)
    return f"{100 * value:.1f} ± {100 * std:.1f}" if std is not None else f"{100 * value:.1f}"


def _metric(results: dict) -> str:
    return metric_name(results.get("targets", "phones"))


def markdown_table(results: dict) -> str:
    models = results["models"]
    M = _metric(results)  # noqa: N806 (the metric's name, as printed)
    lines = [
        f"{M} (%) by language, mode `{results['mode']}`, seeds {results['seeds']}; "
        f"the first model is the reference.",
        "",
        "| language | " + " | ".join(m["name"] for m in models) + " |",
        "| --- | " + " | ".join("---:" for _ in models) + " |",
    ]
    for lang in results["languages"]:
        lines.append(f"| {lang} | " + " | ".join(_cell(m, lang) for m in models) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{_cell(m, None)}**" for m in models) + " |")
    lines.append(
        f"| train {M} (mean) | "
        + " | ".join(f"{100 * m['train_per_mean']:.1f}" for m in models)
        + " |"
    )
    if any("abs_gap" in m for m in models):
        lines.append(
            "| gap (points) | "
            + " | ".join(f"{100 * m['abs_gap']:+.1f}" if "abs_gap" in m else "" for m in models)
            + " |"
        )
    lines.append(
        "| relative gap | " + " | ".join(_relative(m.get("rel_gap")) for m in models) + " |"
    )
    lines.append("| parameters | " + " | ".join(f"{m['params'] / 1e6:.2f}M" for m in models) + " |")
    return "\n".join(lines) + "\n"


def _relative(value: float | None) -> str:
    """A relative gap, or n/a where there is none (a reference PER below 10%, stats.py)."""
    return "n/a" if value is None else f"{100 * value:+.1f}%"


def _interval(ci: list[float] | None, scale: float = 100, digits: int = 1) -> str:
    if ci is None:
        return "[n/a]"
    return f"[{scale * ci[0]:.{digits}f}, {scale * ci[1]:.{digits}f}]"


def _resampled(results: dict) -> str:
    """The units the bootstrap drew, in words (results of an older version: utterances and,
    with several seeds, seeds, each within its language)."""
    boot = results.get("bootstrap", {})
    if "resampling" in boot:
        return describe_resampling(boot["resampling"])
    return "the test utterances" + (" and seeds" if len(results["seeds"]) > 1 else "")


def _p(value: float) -> str:
    return f"{value:.3f}" if value >= 0.001 else f"{value:.0e}"


def tier_table(results: dict) -> str:
    """Models by tier (and "all"): macro PER with its bootstrap interval, the spread across the
    tier's languages, its worst language and, with a log-mel floor, the gain retained."""
    M = _metric(results)  # noqa: N806
    models = results["models"]
    tiers = [*results.get("tiers", {}), "all"]
    gain = any("gain_retained" in m for m in models)
    boot = results.get("bootstrap", {})
    lines = [
        f"Macro {M} (%) by tier with {100 * boot.get('level', 0.95):.0f}% bootstrap intervals "
        f"({boot.get('resamples', '?')} paired resamples of {_resampled(results)}); std: "
        f"across the tier's languages; worst: its highest-{M} language."
        + (
            f" Gain retained: ({M} {results['floor']} − {M} model) / "
            f"({M} {results['floor']} − {M} {models[0]['name']})."
            if gain
            else ""
        ),
        "",
        f"| tier (languages) | model | {M} [95% CI] | std | worst |"
        + (" gain retained [95% CI] |" if gain else ""),
        "| --- | --- | ---: | ---: | --- |" + (" ---: |" if gain else ""),
    ]
    for tier in tiers:
        for k, model in enumerate(models):
            t = model["tiers"][tier]
            cells = [
                f"{tier} ({t['languages']})" if k == 0 else "",
                model["name"],
                f"{100 * t['per']:.1f} {_interval(t['per_ci'])}",
                f"{100 * t['std']:.1f}",
                f"{t['worst'][0]} {100 * t['worst'][1]:.1f}",
            ]
            if gain:
                value = model.get("gain_retained", {}).get(tier)
                cells.append(
                    ""
                    if "gain_retained" not in model
                    else "n/a"
                    if value is None
                    else f"{value:.2f} {_interval(model['gain_retained_ci'][tier], 1, 2)}"
                )
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_table(results: dict) -> str:
    """Paired differences of macro PER over all languages, with Holm-corrected p-values."""
    M = _metric(results)  # noqa: N806
    lines = [
        f"Paired differences of macro {M} (points, a − b; negative: a is better), two-sided "
        "bootstrap p-values, Holm-corrected over the comparisons listed.",
        "",
        "| a | b | diff [95% CI] | p | Holm p |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for row in results["comparisons"]:
        lines.append(
            f"| {row['a']} | {row['b']} | {100 * row['diff']:+.2f} "
            f"{_interval(row['ci'], digits=2)} | {_p(row['p'])} | {_p(row['p_holm'])} |"
        )
    return "\n".join(lines) + "\n"


def sizes_table(results: dict) -> str:
    """What each language was scored on: split, tier, utterances and reference phones."""
    details = results["models"][0]["details"]
    tier_of = {lang: t for t, langs in results.get("tiers", {}).items() for lang in langs}
    lines = [
        "Test data per language (the same for every model).",
        "",
        "| language | split | tier | utterances | phones |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for lang in results["languages"]:
        d = details[lang]
        lines.append(
            f"| {lang} | {d['test_split']} | {tier_of.get(lang, '')} | "
            f"{len(d['utterances'])} | {d['phones']} |"
        )
    return "\n".join(lines) + "\n"


def provenance_lines(results: dict) -> str:
    """What each network heard and which phone labels trained it, first in every report ("not
    recorded" for a model without a provenance record, such as a hub model)."""
    lines = [
        f"- **{m['name']}**: {m['provenance']}"
        for m in results["models"]
        if m.get("provenance") is not None
    ]
    if not lines:
        return ""
    head = "What each model heard and which phone labels trained it (a student's record includes"
    head += " its teacher's):"
    return "\n".join([head, "", *lines, ""])


def report_markdown(results: dict) -> str:
    """results.md: what each model heard and which labels trained it, the language table, then
    (for results with statistics) the tier table, the comparisons, the test sizes and any
    notes."""
    parts = [p for p in (provenance_lines(results), markdown_table(results)) if p]
    if "tiers" in results["models"][0]:
        parts.append(tier_table(results))
    if results.get("comparisons"):
        parts.append(comparison_table(results))
    if "utterances" in next(iter(results["models"][0]["details"].values()), {}):
        parts.append(sizes_table(results))
    if results.get("notes"):
        parts.append("Notes:\n\n" + "".join(f"- {note}\n" for note in results["notes"]))
    return "\n".join(parts)


def similarity_markdown(similarity: dict) -> str:
    lines = [
        "Linear CKA between each student layer and its mapped teacher layer (test speech).",
        "",
    ]
    for student in sorted({s for table in similarity.values() for s in table}):
        sample = next(t[student] for t in similarity.values() if student in t)
        header = [f"s{i + 1}→t{t}" for i, t in enumerate(sample["targets"])]
        lines += [
            f"**{student}**",
            "",
            "| language | " + " | ".join(header) + " |",
            "| --- | " + " | ".join("---:" for _ in header) + " |",
        ]
        for lang, table in similarity.items():
            if student in table:
                lines.append(
                    f"| {lang} | " + " | ".join(f"{v:.3f}" for v in table[student]["cka"]) + " |"
                )
        lines.append("")
    return "\n".join(lines)


def per_figure(results: dict):
    """per.png: grouped bars of each model's PER per language, with its 95% bootstrap interval
    as error bars (where the results have one), the legend beside the axes (never over a bar)."""
    langs, models = results["languages"], results["models"]
    M = _metric(results)  # noqa: N806
    x = np.arange(len(langs))
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(langs) + 2) + 2, 4))
    for k, model in enumerate(models):
        values = np.array([100 * model["per"][lang] for lang in langs])
        cis = model.get("per_ci_by_lang") or {}
        bounds = [cis.get(lang) or [None, None] for lang in langs]
        low = np.array(
            [v if b[0] is None else 100 * b[0] for v, b in zip(values, bounds, strict=True)]
        )
        high = np.array(
            [v if b[1] is None else 100 * b[1] for v, b in zip(values, bounds, strict=True)]
        )
        ax.bar(
            x + (k - (len(models) - 1) / 2) * width,
            values,
            width,
            yerr=np.stack([np.maximum(values - low, 0), np.maximum(high - values, 0)]),
            error_kw={"elinewidth": 0.8, "capsize": 2},
            label=f"{model['name']} (mean {100 * model['per_mean']:.1f})",
        )
    ax.set_xticks(x, langs)
    ax.set_xlabel("language")
    ax.set_ylabel(f"{M} (%)")
    name = "Character" if M == "CER" else "Phone"
    ax.set_title(f"{name} error rate ({results['mode']}); error bars: 95% bootstrap intervals")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig


def plot_per(results: dict, path: Path) -> None:
    fig = per_figure(results)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def similarity_range(grid: np.ndarray) -> tuple[float, float]:
    """The colour range of a similarity heatmap: fitted to its values (0.85-0.96 on a 0-1
    scale would all look alike), widened a little so that equal values still get a range."""
    low, high = float(np.nanmin(grid)), float(np.nanmax(grid))
    pad = max(0.01, 0.05 * (high - low))
    return max(0.0, low - pad), min(1.0, high + pad)


def similarity_figure(similarity: dict):
    """similarity.png: per student, the linear CKA of each student layer (columns) with the
    teacher layer it was distilled towards, per language (rows)."""
    students = sorted({s for table in similarity.values() for s in table})
    fig, axes = plt.subplots(
        1, len(students), figsize=(4 * len(students), 0.35 * len(similarity) + 2), squeeze=False
    )
    for ax, student in zip(axes[0], students, strict=True):
        langs = [lang for lang in similarity if student in similarity[lang]]
        grid = np.array([similarity[lang][student]["cka"] for lang in langs])
        targets = similarity[langs[0]][student]["targets"]
        low, high = similarity_range(grid)
        image = ax.imshow(grid, vmin=low, vmax=high, cmap="viridis", aspect="auto")
        middle = (low + high) / 2
        for (row, col), value in np.ndenumerate(grid):
            ax.text(
                col,
                row,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=6,
                color="black" if value > middle else "white",
            )
        ax.set_xticks(
            range(len(targets)), [f"s{i + 1}→t{t}" for i, t in enumerate(targets)], fontsize=7
        )
        ax.set_yticks(range(len(langs)), langs, fontsize=7)
        ax.set_title(student, fontsize=9)
        ax.set_xlabel("student layer → its teacher layer", fontsize=8)
        ax.set_ylabel("language", fontsize=8)
        fig.colorbar(image, ax=ax).set_label("linear CKA (test utterances)", fontsize=8)
    fig.tight_layout()
    return fig


def plot_similarity(similarity: dict, path: Path) -> None:
    fig = similarity_figure(similarity)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_reports(results: dict, out_dir: Path) -> None:
    (out_dir / "results.md").write_text(report_markdown(results))
    plot_per(results, out_dir / "per.png")
    if results.get("similarity"):
        (out_dir / "similarity.md").write_text(similarity_markdown(results["similarity"]))
        plot_similarity(results["similarity"], out_dir / "similarity.png")
