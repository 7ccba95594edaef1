"""`distilxlsr prepare`: lhotse manifests in the corpus-directory layout (docs/design.md, "Corpus
directory" and "Manifests") from corpora on disk.

Recipes, one module each (lhotse style: `prepare_x(source, output_dir, ...) -> {split: cuts
manifest}`):

- `prepare_librispeech(root, alignments_dir, out)`: LibriSpeech (`ROOT/<part>/<speaker>/<chapter>/
  *.flac` + `<speaker>-<chapter>.trans.txt`) with MFA TextGrids (or `ctm=FILE`, a Kaldi CTM).
  Parts map to splits of language `en`: `train-*` -> train, `dev-*` -> dev, `test-*` -> test;
  several parts of one split go into one manifest.
- `prepare_textgrid(audio_dir, textgrid_dir, out, lang=...)`: any corpus aligned by MFA (audio
  files, optional `.lab`/`.txt` transcripts beside them, one TextGrid per file) or by Kaldi (`ctm=`).
- `prepare_fairseq(directory, out, lang=None)`: fairseq manifests `{split}.tsv` + `{split}.phn`
  (+ `{split}.wrd`, `dict.phn.txt`).
- `prepare_commonvoice(root, out, lang)`: a Common Voice release; phone transcripts by eSpeak NG
  unless phone labels are given.

Output: `OUT/<lang>/{cuts,recordings,supervisions}_<split>.jsonl.gz`, streamed (nothing is held in
memory, so 1,000+ hours stay cheap), and `OUT/<lang>/rejected_<split>.jsonl`. Supervisions carry
`language`, `speaker`, `text`, `custom["phones"]` and, from TextGrids/CTM, `alignment["phone"]`
(silences are left as gaps) and `alignment["word"]`.

Audio policy: every file is decoded once (progress bar; `jobs` worker processes) to find
unreadable, empty or non-finite audio. 16 kHz mono files are referenced where they are; others
(e.g. Common Voice's 48 kHz mp3) are down-mixed and resampled with soxr to 16 kHz FLAC under
`OUT/<lang>/audio/<split>/` (lhotse's load-time resampling needs scipy or torchaudio, which the
toolkit does not require).

Bad input is never dropped silently: each utterance that cannot be used is a counted reject with
its reason (see `REASONS`) in the rejected file and the one-line summary; trivial problems are
repaired and counted (an alignment ending at most `alignment_tolerance` past the audio is cut at
the audio's end). When more than `max_reject_share` of a split is rejected the split is aborted
with a UserError (its partial manifests are removed; the rejected file stays for inspection).

Shared by the recipes: `common` (options, reject codes, the unit of work, alignment sources),
`utterance` (one utterance to a cut or a reject, in worker processes) and `split` (one split's
manifests, rejects and summary).
"""

from distilxlsr.data.prepare.common import AUDIO_SUFFIXES, REASONS, PrepareOptions, Utterance
from distilxlsr.data.prepare.commonvoice import prepare_commonvoice
from distilxlsr.data.prepare.fairseq import prepare_fairseq
from distilxlsr.data.prepare.librispeech import prepare_librispeech
from distilxlsr.data.prepare.textgrid import prepare_textgrid

__all__ = [
    "AUDIO_SUFFIXES",
    "REASONS",
    "PrepareOptions",
    "Utterance",
    "prepare_commonvoice",
    "prepare_fairseq",
    "prepare_librispeech",
    "prepare_textgrid",
]
