"""Num2Text: numbers, years, decades, ordinals, decimals, percentages and ranges to words with `inflect`.

A model that reads "1991" as one or two opaque sub-word pieces and "nineteen ninety-one" as words
sees different things; writing numbers out lets "42" in a document match "forty-two" in a query.
Identifiers that mix letters and digits ("G2V", "H1N1", "LGM-1") are left alone unless asked.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from ..core import DsilabError
from .base import Augmented, Augmenter, _check_texts

IDENTIFIERS = ("keep", "convert")

_INT = r"\d{1,3}(?:,\d{3})+|\d+"
_NUMBER = re.compile(
    rf"""
    (?<![\w.,:])(?<!\w[-–—])                     # not glued to a word, a number or a time ("G2", "1,2", "LGM-1")
    (?P<neg>(?:^|(?<=[\s(\[]))[-−](?=\d))?       # a minus sign at the start of a word
    (?P<int>{_INT})(?P<dec>\.\d+)?
    (?:
        (?P<ord>st|nd|rd|th)                     # ordinal: 1st, 21st, 18th
      | (?P<decade>s)                            # decade or plural: 1920s, 50s
      | (?P<pct>\s?%)                            # percentage
      | (?P<range>\s?[-–—]\s?)(?P<int2>{_INT})(?P<dec2>\.\d+)?   # range: 10-12, 1914–1918
    )?
    (?![\w])(?![.,:]\d)                          # not followed by letters or more digits
    """,
    re.VERBOSE,
)
_IDENT = re.compile(r"[^\W_]+(?:-[^\W_]+)*")


@lru_cache(maxsize=1)
def _engine():
    import inflect

    return inflect.engine()


@dataclass(frozen=True)
class Num2Text(Augmenter):
    """Write numbers as words: "42" -> "forty-two", "1991" -> "nineteen ninety-one", "3.5" -> "three point five".

    `years`: read 4-digit integers in `year_range` as years; `andword`: "" gives "one hundred
    fifty", "and" gives British "one hundred and fifty"; `identifiers`: "keep" leaves tokens that
    mix letters and digits alone, "convert" writes their digit runs out too ("H1N1" -> "H one N one").
    """

    years: bool = True
    year_range: tuple[int, int] = (1100, 2099)
    andword: str = ""
    identifiers: str = "keep"
    name = "num2text"

    def __post_init__(self) -> None:
        if self.identifiers not in IDENTIFIERS:
            raise DsilabError(f"identifiers={self.identifiers!r}; use one of {list(IDENTIFIERS)}.")
        lo, hi = self.year_range
        if not (isinstance(lo, int) and isinstance(hi, int) and lo <= hi):
            raise DsilabError(f"year_range={self.year_range!r} must be (low, high) integers with low <= high, e.g. (1100, 2099).")
        object.__setattr__(self, "year_range", (lo, hi))

    def augment_batch(self, texts: Sequence[str], seed: int = 0) -> list[Augmented]:
        _check_texts(texts, "Num2Text")
        return [self._one(t) for t in texts]

    # -- pieces --------------------------------------------------------------------------------
    def number(self, digits: str, decimals: str = "", negative: bool = False) -> str:
        """An integer or decimal (digits may carry thousands commas) as words."""
        p = _engine()
        plain = digits.replace(",", "")
        if self.years and not decimals and not negative and "," not in digits and len(plain) == 4 and self._is_year(int(plain)):
            return self.year(int(plain))
        words = p.number_to_words(plain + decimals, andword=self.andword, comma="")
        return ("minus " if negative else "") + words

    def _is_year(self, value: int) -> bool:
        return self.year_range[0] <= value <= self.year_range[1]

    def year(self, value: int) -> str:
        """A year as spoken: 1991 -> nineteen ninety-one, 1805 -> eighteen oh five, 2005 -> two thousand five."""
        p = _engine()
        hi, lo = divmod(value, 100)
        if value % 1000 == 0 or 2000 <= value <= 2009:
            return p.number_to_words(value, andword=self.andword, comma="")
        if lo == 0:
            return f"{p.number_to_words(hi)} hundred"
        if lo < 10:
            return f"{p.number_to_words(hi)} oh {p.number_to_words(lo)}"
        return f"{p.number_to_words(hi)} {p.number_to_words(lo)}"

    def _words(self, m: re.Match) -> str:
        p = _engine()
        digits, dec = m["int"], m["dec"] or ""
        if m["ord"]:
            if dec:  # "1.5th" is not an ordinal; leave it
                return m.group(0)
            return p.number_to_words(p.ordinal(digits.replace(",", "")), andword=self.andword, comma="")
        if m["decade"]:
            if dec:
                return m.group(0)
            words = self.number(digits).split(" ")
            last = words[-1].split("-")
            last[-1] = p.plural(last[-1])
            words[-1] = "-".join(last)
            return " ".join(words)
        first = self.number(digits, dec, negative=bool(m["neg"]))
        if m["pct"]:
            return f"{first} percent"
        if m["range"]:
            return f"{first} to {self.number(m['int2'], m['dec2'] or '')}"
        return first

    def _one(self, text: str) -> Augmented:
        changes: list[tuple[str, str]] = []

        def sub(m: re.Match) -> str:
            new = self._words(m)
            if new != m.group(0):
                changes.append((m.group(0), new))
            return new

        out = _NUMBER.sub(sub, text)
        if self.identifiers == "convert":
            out = _IDENT.sub(lambda m: self._identifier(m.group(0), changes), out)
        return Augmented(text, out, tuple(changes))

    def _identifier(self, token: str, changes: list[tuple[str, str]]) -> str:
        """ "H1N1" -> "H one N one", "LGM-1" -> "LGM-one": digit runs inside a word written out."""
        if not (any(c.isdigit() for c in token) and any(c.isalpha() for c in token)):
            return token
        spaced = re.sub(r"\d+", lambda m: f" {_engine().number_to_words(m.group(0), andword=self.andword, comma='')} ", token)
        new = re.sub(r"\s*-\s*", "-", re.sub(r"\s+", " ", spaced)).strip()
        changes.append((token, new))
        return new
