"""What a model heard and which phone labels trained it, including what reached it through the
models it was built from (a teacher's units source or initialisation, a student's teacher).

`pretrain-teacher` writes `provenance.json` beside the model it exports. A later run that takes
its units from that model (HuBERT's next iteration) or starts from its weights inherits what it
heard and the labels that trained it: the tier protocol checks them like the run's own data, and
the model card states them (docs/design.md, "Teacher pretraining"). `distill` writes a student's
record (`student_provenance`) into its run's `student_init/`, and `export` puts it beside the
exported student; evaluation reports print every model's (docs/design.md, "Provenance").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from distilxlsr.errors import UserError

PROVENANCE_FILE = "provenance.json"
LABEL_TIERS = ("label", "english")
"""The tiers whose phone labels a teacher may be trained on (stage 2)."""


@dataclass
class Provenance:
    heard: dict[str, str | None] = field(default_factory=dict)
    """Every language heard, directly or through a source model, with its corpus tier."""
    labels: list[str] = field(default_factory=list)
    """The languages whose phone labels trained the model, directly or through a source."""
    tier_protocol: bool = True
    """False where this model or one of its sources was made with the tier protocol off."""
    unknown: list[str] = field(default_factory=list)
    """Source models (paths or hub ids) whose provenance is not recorded."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"


@dataclass
class Source:
    role: str
    """How the run used the model: "units source" or "initialised from"."""
    path: str
    provenance: Provenance | None
    """None: a hub id, or a directory without provenance.json."""


def unheard_languages(tiers: dict[str, str | None]) -> list[str]:
    """The languages of the `unheard` tier among these, sorted."""
    return sorted(lang for lang, tier in tiers.items() if tier == "unheard")


def outside_label_tiers(tiers: dict[str, str | None], langs) -> list[str]:
    """Those of `langs` whose tier is known and not one of `LABEL_TIERS`, sorted."""
    return sorted(lang for lang in langs if tiers.get(lang) not in (None, *LABEL_TIERS))


def read_provenance(path: str | Path) -> Provenance | None:
    """The provenance saved beside a model directory, or None when there is none."""
    file = Path(path) / PROVENANCE_FILE
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        return Provenance(
            heard=dict(data["heard"]),
            labels=list(data["labels"]),
            tier_protocol=bool(data["tier_protocol"]),
            unknown=list(data.get("unknown", [])),
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"'{file}' is not a provenance record ({err}); remove or fix it.") from None


def student_provenance(teacher: str, tiers: dict[str, str | None]) -> Provenance:
    """A distilled student's record: the languages of its distillation data with their corpus
    tiers, and everything its teacher heard and was trained on (the student starts from the
    teacher's layers and learns its features). Distillation reads no phone label as a target. A
    teacher without a record (a hub id) is listed as unknown; a damaged one is an error, as for
    a teacher's source."""
    recorded = read_provenance(teacher)
    return combine(dict(tiers), [], True, [Source("distilled from", teacher, recorded)])


def describe(provenance: Provenance | None) -> str:
    """One line for reports and cards: what a model heard and which phone labels trained it,
    e.g. "heard en (english), es (label); labels: none"."""
    if provenance is None:
        return "not recorded"
    p = provenance
    heard = ", ".join(with_tier(lang, p.heard) for lang in p.heard)
    labels = "phone labels of " + ", ".join(with_tier(x, p.heard) for x in p.labels)
    none = "none recorded" if p.unknown else "none"
    parts = [
        f"heard {heard}" if heard else "heard: none recorded",
        f"labels: {labels if p.labels else none}",
    ]
    if p.unknown:
        parts.append(f"what came through {', '.join(p.unknown)} is not recorded")
    if not p.tier_protocol:
        parts.append("tier protocol off (a labelled upper bound)")
    return "; ".join(parts)


def with_tier(lang: str, tiers: dict[str, str | None]) -> str:
    """A language with its corpus tier, e.g. "es (label)"; the code alone without one."""
    return f"{lang} ({tiers[lang]})" if tiers.get(lang) else lang


def write_provenance(model_dir: Path, provenance: Provenance) -> None:
    (Path(model_dir) / PROVENANCE_FILE).write_text(provenance.to_json(), encoding="utf-8")


def combine(
    heard: dict[str, str | None], labels: list[str], tier_protocol: bool, sources: list[Source]
) -> Provenance:
    """The run's own data and labels together with everything its sources carry."""
    all_heard = dict(heard)
    all_labels = set(labels)
    protocol = tier_protocol
    unknown: list[str] = []
    for source in sources:
        p = source.provenance
        if p is None:
            unknown.append(source.path)
            continue
        for lang, tier in p.heard.items():
            if all_heard.get(lang) is None:  # a tier the run's own data does not name
                all_heard[lang] = tier
        all_labels.update(p.labels)
        protocol = protocol and p.tier_protocol
        unknown += [u for u in p.unknown if u not in unknown]
    return Provenance(
        heard=dict(sorted(all_heard.items())),
        labels=sorted(all_labels),
        tier_protocol=protocol,
        unknown=unknown,
    )


def check_sources(sources: list[Source], corpus_has_tiers: bool) -> None:
    """The tier protocol applied to the models a run builds on: none may have heard an `unheard`
    language or been trained on labels outside `LABEL_TIERS`; on a corpus with tiers, a source
    whose provenance is not recorded cannot be checked and is refused."""
    for source in sources:
        p = source.provenance
        what = f"{source.role} '{source.path}'"
        if p is None:
            if corpus_has_tiers:
                raise UserError(
                    f"{what} has no {PROVENANCE_FILE}, so what it heard cannot be checked "
                    "against the tier protocol: use a teacher made by `distilxlsr "
                    "pretrain-teacher`, or set tier_protocol=false for a labelled upper bound."
                )
            continue
        unheard = unheard_languages(p.heard)
        if unheard:
            raise UserError(
                f"{what} heard {', '.join(unheard)} of the unheard tier, which no teacher may "
                "hear, even through a source model; set tier_protocol=false for a labelled "
                "upper bound."
            )
        labelled = outside_label_tiers(p.heard, p.labels)
        if labelled:
            raise UserError(
                f"{what} was trained on the phone labels of {', '.join(labelled)} (tier "
                f"{p.heard[labelled[0]]}); only {' and '.join(LABEL_TIERS)} languages' labels "
                "may train a teacher, also through a source model."
            )
        if not p.tier_protocol:
            raise UserError(
                f"{what} was made with tier_protocol=false (a labelled upper bound); a run with "
                "the tier protocol cannot build on it."
            )
