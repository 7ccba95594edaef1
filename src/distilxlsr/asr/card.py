"""The fine-tuned recogniser's model card: what its base model heard and which labels trained
it, what the fine-tuning read, its error rates on the held-out split, and how to use it."""

from __future__ import annotations

from distilxlsr.provenance import Provenance


def _languages(heard: dict[str, str | None]) -> str:
    if not heard:
        return "not recorded"
    return ", ".join(f"{lang} ({tier})" if tier else lang for lang, tier in sorted(heard.items()))


def render_recogniser_card(facts: dict, provenance: Provenance) -> str:
    """README.md of OUT/model (`facts`: the run's results.json)."""
    scores = facts.get("eval") or {}
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: automatic-speech-recognition",
        "tags: [ctc, distilxlsr]",
        "---",
        "",
        f"# Speech recogniser fine-tuned from `{facts['base_model']}`",
        "",
        "Made by `distilxlsr finetune` (CTC fine-tuning of a pretrained wav2vec 2.0-family model; "
        'the method: the toolkit\'s docs/design.md, "Downstream ASR").',
        "",
        "## What it heard and which labels trained it",
        "",
        f"- Heard (the base model and this fine-tuning): {_languages(provenance.heard)}.",
        f"- Labels read: {', '.join(provenance.labels) or 'none'} (the fine-tuning language's "
        f"{'transcripts' if facts['targets'] == 'chars' else 'phone transcripts'}).",
    ]
    if provenance.unknown:
        lines.append(f"- Not recorded for: {', '.join(provenance.unknown)}.")
    if not provenance.tier_protocol:
        lines.append("- Made with the tier protocol off (a labelled upper bound).")
    lines += [
        "",
        "## Fine-tuning",
        "",
        f"- Data: `{facts['data']}`, split `{facts['split']}`: {facts['training']}.",
        f"- Targets: {facts['targets']} ({facts['vocabulary']} tokens with the CTC blank and "
        "`<unk>`).",
        f"- Steps: {facts['steps']['frozen']} with the model frozen (the head alone), then "
        f"{facts['steps']['full']} of the whole model but its CNN; {facts['train_seconds']:g} s "
        "of training.",
    ]
    if facts.get("command"):
        lines.append(f"- Command: `{facts['command']}`")
    lines += ["", "## Error rates", ""]
    if scores:
        lines.append(
            f"On the `{scores['split']}` split ({scores['utterances']} utterances), which also "
            "chose the language model's weight and word bonus (so the LM's row is optimistic; "
            "`distilxlsr evaluate` reports test):"
        )
        lines += ["", "| decoding | " + " | ".join(m.upper() for m in scores["greedy"]) + " |"]
        lines.append("| --- |" + " --- |" * len(scores["greedy"]))
        for how, label in (("greedy", "greedy"), ("lm", "beam search with lm.arpa")):
            if how in scores:
                cells = " | ".join(f"{v:.1%}" for v in scores[how].values())
                lines.append(f"| {label} | {cells} |")
        if "lm_settings" in scores:
            s = scores["lm_settings"]
            lines += ["", f"LM weight {s['lm_weight']:g}, word bonus {s['word_bonus']:g}."]
    else:
        lines.append("Not measured (no held-out split).")
    lm = facts.get("lm")
    lm_line = (
        f"With its language model (`{lm['file']}`, a {lm['order']}-gram of the training "
        "transcripts, lexicon-free beam search): `distilxlsr transcribe --model DIR speech.wav`."
        if lm
        else "Greedy decoding only (the run wrote no language model)."
    )
    lines += [
        "",
        "## Use",
        "",
        "Greedy decoding with `transformers` alone:",
        "",
        "```python",
        "import soundfile",
        "from transformers import pipeline",
        "",
        'asr = pipeline("automatic-speech-recognition", model="PATH/TO/THIS/DIRECTORY")',
        'wave, rate = soundfile.read("speech.wav", dtype="float32")  # 16 kHz mono',
        'print(asr({"raw": wave, "sampling_rate": rate})["text"])',
        "```",
        "",
        "(A file name instead of the array works where `ffmpeg` is installed.)",
        "",
        lm_line,
        "",
    ]
    return "\n".join(lines)
