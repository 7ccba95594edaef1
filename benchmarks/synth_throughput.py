"""Throughput of `distilxlsr synth` in times real time (seconds of audio per wall-clock second).

    python benchmarks/synth_throughput.py [--langs en,sw,ru] [--minutes 10] [--jobs 1,2] [--json F]

Two measurements:
* `engine`: one process synthesising utterances one after another (eSpeak NG, alignment,
  resampling to 16 kHz, FLAC) - what one core does, without start-up or manifests;
* `corpus jobs=N`: `synthesize_corpus` end to end into a fresh directory (worker start-up, one
  forked engine per chunk, manifests, cache stamp, cards), wall clock; per core = that / N.
The target is >= 200x real time per core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from distilxlsr import tune_malloc

ENGINE_PROBE = r"""
import sys, tempfile, time
from pathlib import Path
from distilxlsr.data import synthetic as s
lang, seconds = sys.argv[1], float(sys.argv[2])
engine = s.Engine()
with tempfile.TemporaryDirectory() as d:
    audio = total = 0.0
    i = 0
    start = time.perf_counter()
    while audio < seconds:
        utt = s.render_utterance(engine, s.utterance_spec(lang, "train", 0, i), Path(d))
        audio += utt["num_samples"] / s.SAMPLE_RATE
        i += 1
    total = time.perf_counter() - start
print(audio, total, i)
"""


def engine_speed(lang: str, seconds: float) -> dict:
    """Synthesis in a fresh process (the library must not be loaded in this one)."""
    out = subprocess.run(
        [sys.executable, "-c", ENGINE_PROBE, lang, str(seconds)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    audio, wall, n = float(out[0]), float(out[1]), int(out[2])
    return {"lang": lang, "audio_s": audio, "wall_s": wall, "utterances": n, "x_rt": audio / wall}


def corpus_speed(langs: list[str], minutes: float, jobs: int) -> dict:
    from distilxlsr.data.synthetic import synthesize_corpus

    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        manifests = synthesize_corpus(
            Path(d), langs, minutes, "train", seed=0, jobs=jobs, progress=False
        )
        wall = time.perf_counter() - start
        audio = 0.0
        for manifest in manifests:
            stamp = json.loads((manifest.parent / "synth_train.json").read_text())
            audio += stamp["stats"]["hours"] * 3600
    return {
        "langs": langs,
        "jobs": jobs,
        "audio_s": audio,
        "wall_s": wall,
        "x_rt": audio / wall,
        "x_rt_per_core": audio / wall / jobs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--langs", default="en,sw,ru")
    parser.add_argument("--minutes", type=float, default=10.0, help="per language")
    parser.add_argument("--jobs", default="1,2")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    langs = args.langs.split(",")
    results: dict = {"cpu_count": os.cpu_count(), "engine": [], "corpus": []}
    for lang in langs:
        r = engine_speed(lang, args.minutes * 60)
        results["engine"].append(r)
        print(
            f"engine {lang}: {r['audio_s']:.0f} s of audio in {r['wall_s']:.2f} s = {r['x_rt']:.0f}x real time (1 core)"
        )
    for jobs in (int(j) for j in args.jobs.split(",")):
        r = corpus_speed(langs, args.minutes, jobs)
        results["corpus"].append(r)
        print(
            f"corpus jobs={jobs}: {r['audio_s']:.0f} s of audio in {r['wall_s']:.2f} s = "
            f"{r['x_rt']:.0f}x real time, {r['x_rt_per_core']:.0f}x per core"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    tune_malloc()
    main()
