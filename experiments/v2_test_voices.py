"""The voice of every test utterance of replication v2's records (results/replication/runs/),
recovered without the audio: the records keep per language a digest of the utterance ids
(`ids_sha256`), the reference phone counts and the edit counts, but not the speakers.

Corpus v2's test utterances are a pure function of (language, split, seed 0, index): utterance
i is `synth-<lang>-test-<i:06d>`, and its speaker is drawn from the language's test speaker pool
by a generator seeded with (0, crc32(lang), crc32("test"), i) (data/synthetic/texts.py,
`utterance_spec`, as of corpus v2). lhotse names the cut of recording r `<r>-<i>` (its index in
the recording set), so the evaluated ids are `synth-<lang>-test-<i:06d>-<i>`, i = 0 .. n-1; the
script checks that their digest is each record's `ids_sha256` before it writes anything.

Corpus v3 (12858b1) changed the test speakers, so the pool is rebuilt here as corpus v2 dealt it
(commit aa384eb, data/synthetic/voices.py): each language's one eSpeak voice, the 13 numbered
variants rotated by the voice's CRC-32 and dealt test 2 male + 1 female first, every pitch and
every rate. A voice (the resampling unit, `evaluate.stats.voice_of`) is "voice+variant".

    python experiments/v2_test_voices.py [--results results/replication/runs]
        [--out results/replication/test_voices.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import zlib
from pathlib import Path

import numpy as np

# Corpus v2's speaker grid (data/synthetic/voices.py at aa384eb).
MALE = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8")
FEMALE = ("f1", "f2", "f3", "f4", "f5")
TEST_SHARE = (2, 1)  # (male, female) variants of `test`, dealt first
PITCHES = (25, 38, 50, 62, 75)
RATES = (130, 150, 170, 190, 210)  # test has every rate
SEED = 0  # the evidence corpus's seed (synthesize_evidence_corpus)


def test_variants(voice: str) -> set[str]:
    """The variants corpus v2 dealt to `test` for this eSpeak voice."""
    offset = zlib.crc32(voice.encode("utf-8"))
    males = MALE[offset % 8 :] + MALE[: offset % 8]
    females = FEMALE[offset % 5 :] + FEMALE[: offset % 5]
    return set(males[: TEST_SHARE[0]]) | set(females[: TEST_SHARE[1]])


def test_pool(lang: str) -> list[tuple[str, str, int, int]]:
    """Corpus v2's test speakers of `lang` (voice, variant, pitch, rate), in its order; every
    evaluation language has one eSpeak voice, named like the language."""
    dealt = test_variants(lang)
    return [
        (lang, variant, pitch, rate)
        for variant in MALE + FEMALE
        if variant in dealt
        for pitch in PITCHES
        for rate in RATES
    ]


def test_voice(lang: str, index: int) -> str:
    """The voice ("voice+variant") of corpus v2's test utterance `index` of `lang`."""
    rng = np.random.default_rng([SEED, zlib.crc32(lang.encode()), zlib.crc32(b"test"), index])
    pool = test_pool(lang)
    voice, variant, _, _ = pool[int(rng.integers(len(pool)))]
    return f"{voice}+{variant}"


def cut_ids(lang: str, n: int) -> list[str]:
    return [f"synth-{lang}-test-{i:06d}-{i}" for i in range(n)]


def recover(results: Path) -> dict:
    """{language: {"ids_sha256", "voices"}} for the languages of the records in `results`,
    after checking every record's digest against the recovered ids."""
    languages: dict[str, dict] = {}
    paths = sorted(results.glob("*-s*.json"))
    if not paths:
        raise SystemExit(f"no records (*-s*.json) in {results}")
    for path in paths:
        record = json.loads(path.read_text())
        for lang, entry in record["languages"].items():
            n = len(entry["phones"])
            digest = hashlib.sha256("\n".join(cut_ids(lang, n)).encode()).hexdigest()
            if digest != entry["ids_sha256"]:
                raise SystemExit(
                    f"{path.name}: {lang}'s {n} test ids are not synth-{lang}-test-000000-0 … "
                    "(their digest differs): not corpus v2's test split as recovered here"
                )
            languages.setdefault(
                lang,
                {"ids_sha256": digest, "voices": [test_voice(lang, i) for i in range(n)]},
            )
    return dict(sorted(languages.items()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", default="results/replication/runs")
    parser.add_argument("--out", default="results/replication/test_voices.json")
    args = parser.parse_args()
    languages = recover(Path(args.results))
    out = {
        "corpus": "v2",
        "split": "test",
        "how": "experiments/v2_test_voices.py: each utterance's voice (eSpeak voice+variant) "
        "recomputed from corpus v2's seeded speaker draw; every record's ids_sha256 checked",
        "languages": languages,
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    counts = {lang: len(set(v["voices"])) for lang, v in languages.items()}
    print(
        f"{args.out}: {sum(len(v['voices']) for v in languages.values())} utterances; voices "
        + ", ".join(f"{lang} {c}" for lang, c in counts.items())
    )


if __name__ == "__main__":
    main()
