"""Phone symbols from eSpeak NG's phoneme-event names: IPA, without stress marks.

Most voices name their phoneme events in IPA; a few pass through eSpeak's ASCII mnemonics
(Kirshenbaum-based), which `to_ipa` maps to IPA.
"""

from __future__ import annotations

import re

_STRESS = str.maketrans("", "", "ˈˌ")
# eSpeak's ASCII phoneme mnemonics (Kirshenbaum-based) that a few voices pass through as their
# "IPA" names (e.g. Kyrgyz dZ S N X, t[ d[ l-; Russian u"), longest first.
KIRSHENBAUM_TO_IPA = {
    "tS": "tʃ",
    "dZ": "dʒ",
    "n^": "ɲ",
    "l^": "ʎ",
    "l-": "ɫ",  # eSpeak's 'dark' l
    'u"': "ʉ",
    'i"': "ɨ",
    "S": "ʃ",
    "Z": "ʒ",
    "T": "θ",
    "D": "ð",
    "N": "ŋ",
    "X": "χ",
    "Q": "ɣ",
    "C": "ç",
    "J": "ɟ",
    "G": "ɢ",
    "R": "ʁ",
    "H": "ħ",
    "B": "β",
    "I": "ɪ",
    "U": "ʊ",
    "E": "ɛ",
    "O": "ɔ",
    "V": "ʌ",
    "A": "ɑ",
    "Y": "ø",
    "W": "œ",
    "@": "ə",
    "&": "æ",
    "3": "ɜ",
    "0": "ɒ",
    "*": "ɾ",
    "?": "ʔ",
    ":": "ː",
    "[": "\u032a",  # dental (combining bridge below)
    "-": "",  # eSpeak's mark of a reduced vowel (French "ə-", "y-"); after "l-" above
}
_KIRSHENBAUM_KEYS = sorted(KIRSHENBAUM_TO_IPA, key=len, reverse=True)
# Names in plain lowercase ASCII that are not IPA, per language (Kyrgyz writes ö as "oe").
LANGUAGE_FIXES = {"ky": {"oe": "œ", "oeː": "œː"}}
_NOT_IPA = re.compile(r"[A-Z0-9@&*?:\[\]\"^-]")


def to_ipa(name: str, lang: str = "") -> str:
    """A phone symbol from an eSpeak phoneme-event name: stress marks removed, Kirshenbaum-style
    ASCII names mapped to IPA (IPA names pass unchanged); "" for a pause."""
    name = name.translate(_STRESS).strip()
    if _NOT_IPA.search(name):
        out, i = [], 0
        while i < len(name):
            for key in _KIRSHENBAUM_KEYS:
                if name.startswith(key, i):
                    out.append(KIRSHENBAUM_TO_IPA[key])
                    i += len(key)
                    break
            else:
                out.append(name[i])
                i += 1
        name = "".join(out)
    return LANGUAGE_FIXES.get(lang, {}).get(name, name)
