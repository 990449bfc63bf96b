"""Build the compact name gazetteer the PERSON recognizer reads (`recognizers/names.py`).

Writes ``guardrails/data/names.tsv.gz``: lower-cased, NFC names grouped by their flags,
one line per group, ``flags<TAB>name name ...``, where flags are letters:

- ``f``: a first name ranked within ``--first-rank`` in at least one country,
- ``l``: a last name ranked within ``--last-rank`` in at least one country,
- ``c``: also a common English word (a lower-case entry of the English word list),
- ``p``: also an English proper noun that is not a common word (``Paris``, ``Jordan``),
- ``t``: ranked within ``--top-rank`` in some country (``Tran``, ``Chen``, ``Kim``).

Words that are never a name here (English stop words, greetings, chat words) are
left out, whatever their rank. The names come from ``names-dataset`` (PyPI,
MIT licence; per its documentation, first and last name frequencies per country
aggregated from the 2021 Facebook dump of 533M accounts: only names and their ranks
are read, never a record). The English words come from the SCOWL list of the Debian
package ``wamerican`` (``/usr/share/dict/american-english``).

The full dataset needs gigabytes of memory, so it is read here, at build time, one
half at a time; the recognizer only ever reads the small file. Run::

    pip install names-dataset==3.3.1      # build time only; needs about 2 GB of memory
    apt-get install wamerican             # the English word list
    python scripts/make_name_gazetteer.py
"""

from __future__ import annotations

import argparse
import gzip
import re
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_PATH = ROOT / "guardrails" / "data" / "names.tsv.gz"
WORDS = Path("/usr/share/dict/american-english")
# A name token: letters, with inner apostrophes or hyphens (the recognizer's tokens).
_NAME = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")
# Never a name token, even when someone put it in a name field: function words, what
# support chats are made of, street words and the saints' prefixes of place names.
# spaCy's English stop words are added when spaCy is there.
_NEVER_WORDS = """
a an the and or but if of to in on at by for from with without as is are was were be been
am do does did have has had i me my you your he she it we they them our their this that
these those here there hi hello hey dear thanks thank thx cheers regards please pls plz
yes no ok okay sorry sir madam mr mrs ms miss dr team order invoice card account bank
phone call email mail shop store coffee latte tea cake table love baby god king queen
prince princess lord lady boss man men woman women boy girl mum mom dad son daughter
street road avenue lane calle rua rue via piazza plaza platz strasse straße avenida largo
san santa santo são sao saint sankt st ste
"""
_NEVER = set(_NEVER_WORDS.split())


def _stop_words() -> set[str]:
    try:
        from spacy.lang.en.stop_words import STOP_WORDS
    except ImportError:  # pragma: no cover - the project's environment has spaCy
        return set()
    return {word.lower() for word in STOP_WORDS}


def _english_words(path: Path) -> tuple[set[str], set[str]]:
    """(common words, proper nouns) of the word list, lower-cased, without possessives."""
    common: set[str] = set()
    proper: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        word = unicodedata.normalize("NFC", line.strip())
        if not word or word.endswith("'s"):
            continue
        (proper if word[0].isupper() else common).add(word.lower())
    return common, proper - common


def _ranked(names: dict[str, dict[str, object]], max_rank: int) -> dict[str, int]:
    """Names ranked within `max_rank` in some country, normalised as the recognizer does,
    with their best rank."""
    kept: dict[str, int] = {}
    for name, info in names.items():
        ranks = info.get("rank") or {}
        assert isinstance(ranks, dict)
        best = min((r for r in ranks.values() if isinstance(r, int)), default=None)
        if best is None or best > max_rank:
            continue
        key = unicodedata.normalize("NFC", name.strip()).lower()
        if _NAME.fullmatch(key) and len(key) > 1:
            kept[key] = min(best, kept.get(key, best))
    return kept


def build(first_rank: int, last_rank: int, top_rank: int) -> dict[str, str]:
    from names_dataset import NameDataset

    # One half at a time: the two together need twice the memory.
    first = _ranked(NameDataset(load_last_names=False).first_names, first_rank)
    last = _ranked(NameDataset(load_first_names=False).last_names, last_rank)
    common, proper = _english_words(WORDS)
    never = _NEVER | _stop_words()
    flags = {}
    for name in sorted((first.keys() | last.keys()) - never):
        best = min(first.get(name, top_rank + 1), last.get(name, top_rank + 1))
        flags[name] = "".join(
            letter
            for letter, member in (
                ("f", name in first),
                ("l", name in last),
                ("c", name in common),
                ("p", name in proper),
                ("t", best <= top_rank),
            )
            if member
        )
    return flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first-rank", type=int, default=1000)
    parser.add_argument("--last-rank", type=int, default=1000)
    parser.add_argument("--top-rank", type=int, default=100)
    parser.add_argument("--out", type=Path, default=OUT_PATH)
    args = parser.parse_args()
    flags = build(args.first_rank, args.last_rank, args.top_rank)
    groups: dict[str, list[str]] = {}
    for name, letters in flags.items():
        groups.setdefault(letters, []).append(name)
    text = "".join(f"{letters}\t{' '.join(names)}\n" for letters, names in sorted(groups.items()))
    # mtime=0: the same inputs give a byte-identical file.
    args.out.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
    size = args.out.stat().st_size
    print(f"wrote {len(flags)} names ({size // 1024} KiB) to {args.out}")


if __name__ == "__main__":
    main()
