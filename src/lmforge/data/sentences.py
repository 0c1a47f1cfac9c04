"""Rule-based sentence splitting for pretraining text.

BERT's ``create_pretraining_data.py`` expects one sentence per line and leaves the splitting
to the user (the BERT authors used spaCy); NSP only needs sentence-like units in document
order, so a small rule set is enough and keeps the package dependency-free.

The rules:

1. A blank line ends a paragraph, and a paragraph never continues into the next one.
2. Inside a paragraph, line breaks are read one of two ways, decided per document:
   - *sentence lines* (the Brown corpus, BERT's own input format): every line break ends a
     sentence;
   - *wrapped lines* (Project Gutenberg, hard-wrapped at ~70 columns): line breaks are spaces.
   ``line_breaks="auto"`` picks *sentence lines* when at least half of the lines that are
   followed by another line of the same paragraph end like a sentence (``.!?:;``, possibly
   followed by closing quotes or brackets); hard-wrapped prose ends only ~1 line in 5 so.
3. Inside a line or joined paragraph, a sentence ends after ``.``, ``!`` or ``?`` (and any
   closing quotes/brackets) followed by whitespace and then an upper-case letter or an
   opening quote/bracket. A period does not end a sentence after a known abbreviation
   (Mr. Dr. St. e.g. i.e.), a single letter (initials: "J. R. R.") or a word with an inner
   period ("U.S.").
"""

from __future__ import annotations

import re
from typing import Literal

LineBreaks = Literal["auto", "sentence", "wrapped"]

_CLOSERS = "\"'”’»)]}"
_OPENERS = "\"'“‘«([{`"

# The end of a candidate sentence: terminal punctuation, closers, then whitespace.
_BOUNDARY = re.compile(rf"([.!?]+)[{re.escape(_CLOSERS)}]*(\s+)")
_LINE_END = re.compile(rf"[.!?:;][{re.escape(_CLOSERS)}]*\s*$|''\s*$")
_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_LAST_WORD = re.compile(r"(\S+)$")

# Lower-case, without the period: titles and common short forms that precede a name or a
# capitalised word. Forms used only before numbers ("No. 5", "p. 12") need no entry: a digit
# never starts a sentence here, and "No." is also a whole sentence in dialogue.
ABBREVIATIONS = frozenset(
    """mr mrs ms messrs mme mlle dr prof rev hon st sr jr gen col capt lt sgt maj cmdr adm gov
    pres sen rep esq e.g i.e cf viz vs al approx dept mt ft inc ltd co corp bros""".split()
)


def split_sentences(text: str, line_breaks: LineBreaks = "auto") -> list[str]:
    """Split a document into sentences (stripped, non-empty, in order)."""
    paragraphs = [p for p in _PARAGRAPH.split(text) if p.strip()]
    mode = line_breaks if line_breaks != "auto" else detect_line_breaks(paragraphs)
    sentences: list[str] = []
    for paragraph in paragraphs:
        if mode == "sentence":
            units = paragraph.split("\n")
        else:
            units = [" ".join(line.strip() for line in paragraph.split("\n"))]
        for unit in units:
            sentences.extend(split_line(unit))
    return sentences


def detect_line_breaks(paragraphs: list[str]) -> Literal["sentence", "wrapped"]:
    """``"sentence"`` if most inner line breaks follow a sentence end, else ``"wrapped"``."""
    inner = sentence_like = 0
    for paragraph in paragraphs:
        lines = [line for line in paragraph.split("\n") if line.strip()]
        for line in lines[:-1]:
            inner += 1
            sentence_like += bool(_LINE_END.search(line))
    return "sentence" if inner and 2 * sentence_like >= inner else "wrapped"


def split_line(text: str) -> list[str]:
    """Split one line (or a paragraph joined into one line) at the sentence ends of rule 3."""
    sentences = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        end = match.end()
        if end >= len(text) or not (text[end].isupper() or text[end] in _OPENERS):
            continue
        if match.group(1) == "." and _is_abbreviation(text[start : match.start()]):
            continue
        sentences.append(text[start : match.start(2)].strip())
        start = end
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def _is_abbreviation(before: str) -> bool:
    match = _LAST_WORD.search(before)
    if match is None:
        return False  # a lone "." (Brown's tokenisation: "place .") ends a sentence
    word = match.group(1).lstrip(_OPENERS).lower()
    return word in ABBREVIATIONS or (len(word) == 1 and word.isalpha()) or "." in word
