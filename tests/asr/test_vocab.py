"""The recogniser's vocabulary: built from transcripts, saved as a Hugging Face tokenizer's
vocab.json, and round-tripped."""

from __future__ import annotations

import json

import pytest
import transformers

from distilxlsr.asr.vocab import Vocabulary
from distilxlsr.errors import UserError


def test_characters_of_normalised_transcripts_after_blank_unknown_and_delimiter():
    vocab = Vocabulary.from_transcripts(["Ba ab.", "ab, CA!"])
    assert vocab.tokens == ("<pad>", "<unk>", "|", "a", "b", "c")
    assert vocab.blank == 0 and vocab.unknown == 1 and vocab.delimiter == 2
    # the same transcripts in another order give the same vocabulary
    assert Vocabulary.from_transcripts(["ab, CA!", "Ba ab."]) == vocab


def test_a_transcript_is_encoded_with_the_delimiter_and_unknown_characters():
    vocab = Vocabulary.from_transcripts(["ab ba"])
    assert vocab.encode("Ab  bz.") == [3, 4, 2, 4, 1]
    assert vocab.decode([3, 4, 2, 4, 3]) == "ab ba"
    assert vocab.decode([2, 3, 0, 2, 2, 4, 2]) == "a b"  # blanks dropped, spaces trimmed


def test_a_vocabulary_round_trips_through_its_file(tmp_path):
    vocab = Vocabulary.from_transcripts(["მზე ქარი", "вода"])  # Georgian, Cyrillic
    vocab.save(tmp_path)
    assert Vocabulary.load(tmp_path) == vocab
    text = "ქარი вода"
    assert vocab.decode(vocab.encode(text)) == text


def test_the_saved_tokenizer_encodes_and_decodes_as_the_vocabulary_does(tmp_path):
    vocab = Vocabulary.from_transcripts(["ab ba", "cab"])
    vocab.tokenizer(tmp_path)
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert len(tok) == len(vocab)  # no token beyond the CTC head's outputs
    ids = vocab.encode("cab ab")
    assert tok("cab ab").input_ids == ids
    assert tok.decode([ids[0], ids[0], 0, *ids[1:]]) == "cab ab"  # CTC collapse, blank = pad
    assert tok.pad_token_id == vocab.blank


def test_phone_vocabulary_keeps_phones_whole(tmp_path):
    vocab = Vocabulary.from_phones([["t͡ʃ", "a"], ["a", "b"]])
    assert vocab.tokens == ("<pad>", "<unk>", "a", "b", "t͡ʃ") and vocab.delimiter is None
    assert vocab.encode(["t͡ʃ", "a", "x"]) == [4, 2, 1]
    assert vocab.decode([4, 2]) == ["t͡ʃ", "a"]
    vocab.tokenizer(tmp_path)
    assert json.loads((tmp_path / "vocab.json").read_text())["t͡ʃ"] == 4


def test_no_transcript_or_a_damaged_file_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="no character"):
        Vocabulary.from_transcripts(["", " ,. "])
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0, "<pad>": 1}))
    with pytest.raises(UserError, match="not a CTC vocabulary"):
        Vocabulary.load(tmp_path)
