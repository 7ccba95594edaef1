"""A second synthesiser for checking results: Festival's voices built from recordings of people.

eSpeak NG is a formant synthesiser: every voice is the same rule-driven source and filter, so a
result measured on corpus v3 alone may be an artefact of that synthesiser (docs/design.md,
"Festival check corpus"). Festival's Debian voices concatenate diphones (or, for Russian, larger
units) cut from recordings of one real speaker each:

- English: `kal_diphone` (American male) for `train`, `ked_diphone` (another American male) for
  `test` and `dev`;
- Italian: `pc_diphone` (male) for `train`, `lp_diphone` (female) for `test` and `dev`;
- Russian: `msu_ru_nsh_clunits` (male), the only Russian voice, for every split.

Each recorded speaker is played as several pseudo-voices: the audio resampled as if recorded at
`factor` x 16 kHz (pitch and formants times `factor`, tempo too) and, for the diphone voices,
Festival's `Duration_Stretch` (the clunits voice ignores it). Training and held-out splits use
disjoint factors. The recorded speakers, not the pseudo-voices, are the independent units: a
language's test has one of them, and a report must say so.

The texts are corpus v3's (`make_text`), the phones Festival's own labels (per voice's phone
set, stress digits removed; pauses `sil`). Labels are consistent within a language (both
English voices share the radio phone set and CMU lexicon, both Italian voices Festival's Italian
front end), which is all a probe needs. No word alignment is written.

`synthesize_festival_corpus` writes the same corpus-directory layout as `synthesize_corpus`, so
the evaluation harness reads it unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from distilxlsr.conventions import SAMPLE_RATE, SILENCE
from distilxlsr.data.synthetic.files import CHUNK, is_cached, package_version, split_files
from distilxlsr.data.synthetic.texts import asset_path, make_text
from distilxlsr.data.synthetic.voices import Speaker
from distilxlsr.errors import UserError

FESTIVAL_SPLITS = ("train", "dev", "test")
FESTIVAL_VOICES: dict[str, dict[str, str]] = {
    "en": {"train": "kal_diphone", "dev": "ked_diphone", "test": "ked_diphone"},
    "it": {"train": "pc_diphone", "dev": "lp_diphone", "test": "lp_diphone"},
    "ru": {
        "train": "msu_ru_nsh_clunits",
        "dev": "msu_ru_nsh_clunits",
        "test": "msu_ru_nsh_clunits",
    },
}
DEBIAN_PACKAGES = {
    "kal_diphone": "festvox-kallpc16k",
    "ked_diphone": "festvox-kdlpc16k",
    "pc_diphone": "festvox-itapc16k",
    "lp_diphone": "festvox-italp16k",
    "msu_ru_nsh_clunits": "festvox-ru",
}
# Pseudo-voices: (resampling factor x 100, duration stretch x 100); disjoint between training and
# held-out splits. The clunits voice ignores the stretch, so it is recorded as 100 there.
FACTORS = {"train": (92, 100, 108), "dev": (90, 106), "test": (88, 96, 104, 112)}
STRETCHES = {"train": (90, 100, 110), "dev": (100,), "test": (95, 105)}
_STRETCHABLE = ("_diphone",)
SCRIPT_ENCODINGS = {"msu_ru_nsh_clunits": "utf-8"}
"""How a voice's front end reads its text: the Russian voice UTF-8, the others Latin-1 (the
Italian letter-to-sound rules fail on UTF-8's bytes, checked)."""


def script_encoding(voice: str) -> str:
    return SCRIPT_ENCODINGS.get(voice, "latin-1")


_FESTIVAL_GENERATOR = 1  # part of the cache key: bump when the output's definition changes


def festival_languages() -> list[str]:
    return list(FESTIVAL_VOICES)


def festival_speakers(lang: str, split: str) -> tuple[Speaker, ...]:
    """The pseudo-voices of `lang`'s `split`: voice x factor (variant "fNNN") x stretch."""
    voice = FESTIVAL_VOICES[lang][split]
    stretches = STRETCHES[split] if voice.endswith(_STRETCHABLE) else (100,)
    return tuple(
        Speaker(voice, f"f{factor}", factor, stretch)
        for factor in FACTORS[split]
        for stretch in stretches
    )


def festival_spec(lang: str, split: str, seed: int, index: int) -> dict:
    """What utterance `index` says and who says it (a pure function of the arguments)."""
    rng = np.random.default_rng(
        [
            seed,
            zlib.crc32(b"festival"),
            zlib.crc32(lang.encode()),
            zlib.crc32(split.encode()),
            index,
        ]
    )
    pool = festival_speakers(lang, split)
    speaker = pool[int(rng.integers(len(pool)))]
    return {
        "id": f"festival-{lang}-{split}-{index:06d}",
        "lang": lang,
        "text": make_text(lang, split, rng),
        "speaker": speaker,
    }


def scheme_string(text: str) -> str:
    """`text` as a Scheme string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def chunk_script(specs: list[dict], out_dir: Path) -> bytes:
    """A Festival batch script synthesising each spec into OUT_DIR/<id>.wav and <id>.segs, each
    text in its voice's encoding (`SCRIPT_ENCODINGS`); an utterance Festival fails on is reported
    ("FAILED <id>") and the script goes on; a text the encoding cannot hold is left out."""
    lines = []
    for spec in specs:
        speaker: Speaker = spec["speaker"]
        stem = out_dir / spec["id"]
        encoding = script_encoding(speaker.voice)
        try:
            spec["text"].encode(encoding)
        except UnicodeEncodeError:
            continue
        lines.append(
            "(unwind-protect (begin "
            f"(voice_{speaker.voice}) "
            f"(Parameter.set 'Duration_Stretch {speaker.rate / 100:.2f}) "
            f"(set! u (Utterance Text {scheme_string(spec['text'])})) "
            "(utt.synth u) "
            f"(utt.save.wave u {scheme_string(str(stem) + '.wav')} 'riff) "
            f"(utt.save.segs u {scheme_string(str(stem) + '.segs')})) "
            f'(format t "FAILED %s\\n" {scheme_string(spec["id"])}))'.encode(encoding)
        )
    return b"\n".join(lines) + b"\n"


def parse_segs(text: str) -> list[tuple[float, str]]:
    """(end in seconds, label) of each segment of a Festival .segs file (after its '#' line);
    pauses (`pau`, `#`) become `sil`, stress digits are removed."""
    framed = "\n" + text
    body = framed.split("\n#\n", 1)[1] if "\n#\n" in framed else text
    segments = []
    for line in body.strip().splitlines():
        parts = line.split()
        if len(parts) != 3:
            raise ValueError(f"not a Festival segment line: {line!r}")
        end, label = float(parts[0]), parts[2]
        label = SILENCE if label in ("pau", "#", "h#") else label.rstrip("0123456789")
        segments.append((end, label))
    return segments


def phone_spans(
    segments: list[tuple[float, str]], factor: float, num_samples: int
) -> list[tuple[str, int, int]]:
    """Segments tiling [0, num_samples) at `SAMPLE_RATE`, after resampling by `factor` (a segment
    ending at t seconds in Festival's output ends at t / factor); empty ones dropped."""
    spans, start = [], 0
    for i, (end, label) in enumerate(segments):
        stop = num_samples if i == len(segments) - 1 else round(end * SAMPLE_RATE / factor)
        stop = min(max(stop, start), num_samples)
        if stop > start:
            if spans and spans[-1][0] == label == SILENCE:
                spans[-1] = (label, spans[-1][1], stop)
            else:
                spans.append((label, start, stop))
        start = stop
    return spans


@functools.cache
def festival_version() -> str:
    """Festival's version number ("2.5.0"), or its whole version line if it has none."""
    out = subprocess.run(["festival", "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"\d+\.\d+(\.\d+)?", out.stdout)
    return match.group(0) if match else out.stdout.strip()


def _run_festival(specs: list[dict], tmp_dir: Path) -> set[str]:
    """Festival over SPECS in as few processes as its crashes allow: an error inside an
    utterance is caught by the script (the process goes on), but Festival 2.5 dies on some
    texts (segfaults on an empty or punctuation-only one, checked); then the first utterance
    without output is given up and a fresh process takes the rest. Returns the ids given up."""
    given_up: set[str] = set()
    pending = list(specs)
    while pending:
        script = tmp_dir / "chunk.scm"
        script.write_bytes(chunk_script(pending, tmp_dir))
        run = subprocess.run(["festival", "-b", str(script)], capture_output=True, timeout=600)
        if run.returncode == 0:
            return given_up
        done = [(tmp_dir / f"{s['id']}.segs").is_file() for s in pending]
        first = done.index(False) if False in done else len(done)
        if first == len(done):  # every output written, then the exit failed: keep them
            return given_up
        given_up.add(pending[first]["id"])
        pending = pending[first + 1 :]
    return given_up


def render_festival_chunk(specs: list[dict], audio_dir: str) -> dict:
    """Synthesise a chunk with Festival (`_run_festival`); write each utterance's 16 kHz FLAC.
    Returns the manifest data of each utterance and the ids Festival failed on (an error, a
    crash, no phone, or a text its voice's encoding cannot hold)."""
    directory = Path(audio_dir)
    utterances, failed = [], []
    with tempfile.TemporaryDirectory(prefix="festival-") as tmp:
        tmp_dir = Path(tmp)
        _run_festival(specs, tmp_dir)
        for spec in specs:
            wav, segs = tmp_dir / f"{spec['id']}.wav", tmp_dir / f"{spec['id']}.segs"
            if not (wav.is_file() and segs.is_file()):
                failed.append(spec["id"])
                continue
            audio, rate = sf.read(wav, dtype="float32")
            factor = spec["speaker"].pitch / 100
            wave = soxr.resample(audio, rate * factor, SAMPLE_RATE)
            wave = np.clip(wave, -1.0, 32767 / 32768)
            spans = phone_spans(parse_segs(segs.read_text()), factor, len(wave))
            if not any(label != SILENCE for label, _, _ in spans):
                failed.append(spec["id"])
                continue
            path = directory / f"{spec['id']}.flac"
            sf.write(path, wave, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
            utterances.append(
                {
                    "id": spec["id"],
                    "path": str(path),
                    "num_samples": len(wave),
                    "text": spec["text"],
                    "speaker": spec["speaker"],
                    "phones": spans,
                    "words": [],
                }
            )
    return {"engine": f"festival {festival_version()}", "utterances": utterances, "failed": failed}


class FestivalPool:
    """`jobs` threads, each running one Festival process per chunk (`submit` returns a future)."""

    def __init__(self, jobs: int):
        self._threads = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="festival")

    def submit(self, task):
        return self._threads.submit(render_festival_chunk, *task)

    def close(self, wait: bool = True) -> None:
        self._threads.shutdown(wait=wait, cancel_futures=not wait)


def check_festival(langs: list[str]) -> None:
    """One error naming what to install when Festival or a voice is missing."""
    if shutil.which("festival") is None:
        raise UserError(
            "the Festival check corpus needs Festival: apt install festival "
            + " ".join(DEBIAN_PACKAGES.values())
        )
    for lang in langs:
        for voice in dict.fromkeys(FESTIVAL_VOICES[lang].values()):
            probe = subprocess.run(
                ["festival", "-b", f"(voice_{voice})"], capture_output=True, text=True
            )
            if "unbound variable" in probe.stdout + probe.stderr or probe.returncode != 0:
                raise UserError(
                    f"Festival has no voice {voice} ({lang}): apt install {DEBIAN_PACKAGES[voice]}"
                )


def _package_versions(voice: str) -> str:
    """The Debian packages' versions of Festival and VOICE ("unknown" without dpkg)."""
    packages = ["festival", DEBIAN_PACKAGES.get(voice, voice)]
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Package} ${Version}\\n", *packages],
            capture_output=True,
            text=True,
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def festival_cache_key(lang: str, split: str, minutes: float, seed: int, lang_dir: Path) -> str:
    args = {
        "generator": _FESTIVAL_GENERATOR,
        "chunk": CHUNK,
        "lang": lang,
        "split": split,
        "minutes": float(minutes),
        "seed": int(seed),
        "festival": festival_version(),
        "voices": FESTIVAL_VOICES[lang][split],
        "packages": _package_versions(FESTIVAL_VOICES[lang][split]),
        "speakers": [s.id for s in festival_speakers(lang, split)],
        "encoding": script_encoding(FESTIVAL_VOICES[lang][split]),
        "soxr": package_version("soxr"),
        "text": hashlib.sha256(asset_path(lang).read_bytes()).hexdigest(),
        "dir": str(lang_dir.resolve()),
    }
    return hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()


PHONES_NOTE = "phone -> count in custom['phones'] (Festival's phone set of the voice, no stress)"


def synthesize_festival_corpus(
    out: Path,
    langs: list[str],
    minutes: float,
    split: str,
    seed: int = 0,
    jobs: int = 1,
    progress: bool = True,
) -> list[Path]:
    """Write `minutes` of Festival speech per language into OUT/<lang>/ in the synthetic corpus's
    layout (see the module doc); returns the cut manifests. An output already written with the
    same arguments is reused. Utterances Festival fails on are skipped and counted (printed and
    in the split's stamp)."""
    from distilxlsr.data.synthetic.corpus import synthesize_split, write_split

    out = Path(out)
    unknown = [lang for lang in langs if lang not in FESTIVAL_VOICES]
    if unknown:
        raise UserError(
            f"no Festival voice for {', '.join(unknown)}; languages: {', '.join(FESTIVAL_VOICES)}"
        )
    if split not in FESTIVAL_SPLITS:
        raise UserError(f"Festival split '{split}' is not one of {', '.join(FESTIVAL_SPLITS)}")
    check_festival(langs)
    manifests = []
    pool = FestivalPool(jobs)
    try:
        for lang in dict.fromkeys(langs):
            lang_dir = out / lang
            lang_dir.mkdir(parents=True, exist_ok=True)
            key = festival_cache_key(lang, split, minutes, seed, lang_dir)
            if not is_cached(lang_dir, split, key):
                result = synthesize_split(
                    pool, lang, split, minutes, seed, jobs, lang_dir, progress, festival_spec
                )
                if result["failed"]:
                    print(
                        f"festival {lang}/{split}: skipped {len(result['failed'])} utterances "
                        f"Festival could not synthesise or encode (e.g. {result['failed'][0]})"
                    )
                args = {"lang": lang, "split": split, "minutes": minutes, "seed": seed}
                write_split(lang, split, lang_dir, result, key, args, PHONES_NOTE)
            manifests.append(split_files(lang_dir, split)[2])
    finally:
        with contextlib.suppress(Exception):
            pool.close()
    return manifests


def synthesize_festival_check_corpus(out: Path, langs: list[str], jobs: int = 1) -> None:
    """The Festival check corpus as the experiments use it: `train` (the probes' training data)
    and `test` of LANGS at corpus v3's evaluation minutes (`EVIDENCE_MINUTES`), seed 0; splits
    already written with these arguments are reused."""
    from distilxlsr.data.synthetic.corpus import EVIDENCE_MINUTES

    for split in ("train", "test"):
        synthesize_festival_corpus(out, langs, EVIDENCE_MINUTES[split], split, seed=0, jobs=jobs)
