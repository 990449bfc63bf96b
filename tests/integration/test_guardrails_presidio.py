"""The guardrails with real Presidio and the bundled spaCy pipeline."""

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from random import Random
from typing import Any

import pytest

from lorastack.errors import PiiBlocked
from lorastack.guardrails.detector import (
    PHONE_REGIONS,
    PresidioDetector,
    shared_analyzer,
    spacy_model_path,
)
from lorastack.guardrails.entities import BUILTIN_ENTITIES, Direction
from lorastack.guardrails.evaluation import LabelledExample, evaluate
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.normalize import normalize
from lorastack.guardrails.policy import GuardPolicy, default_policy
from lorastack.guardrails.runtime import limit_numpy_blas_threads
from lorastack.guardrails.vault import Vault

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EVERY_TYPE = (
    "I'm Jane Porter from Leeds. Mail jane.porter@example.com or call +44 20 7946 0958. "
    "Card 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32, SSN 536-22-8416, "
    "my IP is 203.0.113.7."
)
# The types EVERY_TYPE holds: the first built-in ones (issue 19's have their own unit tests).
STOCK_ENTITIES = set(BUILTIN_ENTITIES[: BUILTIN_ENTITIES.index("LOCATION") + 1])


@pytest.fixture(autouse=True, scope="module")
def _set_up_as_the_commands_do() -> None:
    """numpy's BLAS on one thread, as the commands set it, so the NER runs on it."""
    limit_numpy_blas_threads()


def _guard(policy: GuardPolicy | None = None) -> Guard:
    return Guard(policy or default_policy(), PresidioDetector())


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    shared_analyzer.cache_clear()
    yield
    shared_analyzer.cache_clear()


def test_every_builtin_entity_is_found_with_no_network(no_network: None) -> None:
    result = _guard().scan(EVERY_TYPE, Direction.INPUT)
    assert {f.type for f in result.findings} == STOCK_ENTITIES
    for value in ("Jane Porter", "jane.porter@example.com", "4111", "GB82", "536-22", "203.0"):
        assert value not in result.redacted


def test_obfuscated_values_are_masked_at_their_original_spans() -> None:
    text = (
        "write to jane dot doe at example dot com or j.doe＠example.org, "
        "card 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1"
    )
    result = _guard().scan(text, Direction.INPUT)
    assert result.redacted == (
        "write to <EMAIL_ADDRESS_1> or <EMAIL_ADDRESS_2>, card <CREDIT_CARD_1>"
    )


def test_shipped_evaluation_set_meets_its_bar() -> None:
    lines = (ROOT / "guardrails/data/pii_eval.jsonl").read_text(encoding="utf-8").splitlines()
    examples = [LabelledExample.from_record(json.loads(line)) for line in lines]
    assert len(examples) >= 300
    report = evaluate(_guard(), examples).to_dict()
    assert set(report["entities"]) >= set(BUILTIN_ENTITIES)
    assert report["leak_rate"] <= 0.03
    assert report["overall"]["f2"] >= 0.93
    assert report["negatives_changed_rate"] <= 0.08
    for name in BUILTIN_ENTITIES:
        assert report["entities"][name]["recall"] >= 0.8, name


def test_context_words_raise_a_custom_entity_only_near_them() -> None:
    custom = {"type": "ORDER_NUMBER", "patterns": [r"\b\d{6}\b"], "context": ["order"]}
    guard = _guard(GuardPolicy.model_validate({"custom": [{**custom, "score": 0.3}]}))
    assert [f.type for f in guard.find("Hi, my order 448812 never came")] == ["ORDER_NUMBER"]
    assert guard.find("Hi, the parcel weighed 448812 grams") == []


PHONE_TEXTS = [
    "call 0207 946 0958, or +1 (212) 555-0199 ext. 12, or 555 0100 int 22",
    "(020) 7946-0958 / x 12; 0161 496 0000/0161 496 0001 and 2024-01-15 10:30",
    "tel +49 30 1234567 доб 45 anexo 6, FAX 0049-30-7654321#, 12:30 and 12:45",
    "0207946095abc 4242 1234567 x1234567 p. 555-0100 pp. 12-19",
]


def test_phone_numbers_are_found_as_presidio_finds_them() -> None:
    """The chunked phone recognizer against Presidio's own, on texts made up at random."""
    from presidio_analyzer import EntityRecognizer
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    (fast,) = [r for r in shared_analyzer().registry.recognizers if "Phone" in r.name]
    stock = PhoneRecognizer(supported_regions=list(PHONE_REGIONS), leniency=0)
    pieces = [*" ,-./:#+()x", " call me on ", "ext", " int ", "доб", "anexo", "+44", "020", "7946"]
    pieces += ["0958", "(212)", "555-0199", "12:30", "2024-01-15", "4242", "0049", "12345678"]
    random = Random(8)
    texts = [*PHONE_TEXTS]
    texts += ["".join(random.choices(pieces, k=random.randint(3, 25))) for _ in range(300)]

    def spans(results: list[Any], text: str) -> set[tuple[int, int]]:
        # Phones with fewer than seven digits are dropped by the detector either way.
        return {
            (r.start, r.end)
            for r in results
            if sum(c.isdigit() for c in text[r.start : r.end]) >= 7
        }

    for text in texts:
        expected = EntityRecognizer.remove_duplicates(stock.analyze(text, ["PHONE_NUMBER"]))
        assert spans(fast.analyze(text, ["PHONE_NUMBER"]), text) == spans(expected, text), text


def _stock_presidio_analyzer() -> Any:
    """The analyzer as first built: Presidio's own spaCy engine (NER enabled, the rest
    disabled), phone recognizer, context enhancer, and BLIS for the matrix products."""
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    fast = shared_analyzer()
    engine = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": str(spacy_model_path())}],
            "ner_model_configuration": {
                "labels_to_ignore": fast.nlp_engine.ner_model_configuration.labels_to_ignore
            },
        }
    ).create_engine()
    assert isinstance(engine, SpacyNlpEngine) and engine.nlp is not None
    pipeline = engine.nlp["en"]
    for name in pipeline.pipe_names:
        if name != "ner":
            pipeline.disable_pipe(name)
    recognizers = [
        PhoneRecognizer(supported_regions=list(PHONE_REGIONS), leniency=0)
        if r.name == "ChunkedPhoneRecognizer"
        else r
        for r in fast.registry.recognizers
    ]
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


def test_the_fast_analyzer_finds_what_presidios_stock_setup_finds() -> None:
    """Same findings, same scores, on every evaluation text, as Presidio's own pieces,
    whether the texts are detected one by one or together."""
    lines = (ROOT / "guardrails/data/pii_eval.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [normalize(json.loads(line)["text"]).text for line in lines]
    texts += [*ANSWERS, EVERY_TYPE, *PHONE_TEXTS]
    fast, stock = PresidioDetector(), PresidioDetector(_stock_presidio_analyzer())
    one_by_one = [fast.detect(text, BUILTIN_ENTITIES) for text in texts]
    for text, found in zip(texts, one_by_one, strict=True):
        assert found == stock.detect(text, BUILTIN_ENTITIES), text
    # All at once, as training data is scrubbed (spaCy's NER over batches): the same.
    assert fast.detect_many(texts, BUILTIN_ENTITIES) == one_by_one


ANSWERS = [
    "Of course <PERSON_1>! Olusegun Adeyemi from our Leeds team will call you on "
    "+44 20 7946 0958 and confirm by email to olu.adeyemi@example.com.",
    "The refund went to card 4111 1111 1111 1111 and IBAN GB82 WEST 1234 5698 7654 32; "
    "Siobhán O'Brien approved it.",
    # Issue 19's entities: an address, a name from outside the English patterns, a NINO.
    "We will post it to 1428 Elm Street, Springfield, IL 62704 for Siobhán Ní Bhriain; her "
    "National Insurance number AB 12 34 56 C is on file.",
]
RAW = (
    "Olusegun",
    "Adeyemi",
    "7946 0958",
    "olu.adeyemi@example.com",
    "4111 1111",
    "GB82 WEST",
    "Siobhán",
    "O'Brien",
    "1428 Elm",
    "Springfield, IL",
    "Ní Bhriain",
    "12 34 56",
)
TAG = re.compile(r"<[A-Z][A-Z0-9_]*>")


@pytest.mark.parametrize("answer", ANSWERS)
def test_streamed_answers_never_leak_at_any_split_point(answer: str) -> None:
    guard = _guard()
    vault = Vault()
    guard.protect_messages([{"role": "user", "content": "I'm Jane Porter"}], vault)
    chunkings = [[answer[:i], answer[i:]] for i in range(1, len(answer))] + [list(answer)]
    for chunks in chunkings:
        redactor = guard.stream(vault)
        emitted = [redactor.feed(chunk) for chunk in chunks] + [redactor.finish()]
        output = "".join(emitted)
        for value in RAW:
            assert value not in output, (chunks, output)
        for piece in emitted:
            assert piece.count("<") == len(TAG.findall(piece)) == piece.count(">")
        if "<PERSON_1>" in answer:
            assert output.startswith("Of course Jane Porter!")


def test_a_streamed_secret_is_blocked_before_any_of_it_is_shown() -> None:
    """The default policy blocks a SECRET in an answer: at no split point does a piece of
    the key reach the user first."""
    key = "sk-proj-EXAMPLEa8Fk2Lq9Zr7Xw3Vb6Nm1Pt4Yc0Hd5Js"
    answer = f"Use the key {key} and restart the app."
    guard = _guard()
    for chunks in [[answer[:i], answer[i:]] for i in range(1, len(answer))] + [list(answer)]:
        redactor = guard.stream(Vault())
        shown = ""
        with pytest.raises(PiiBlocked):
            for chunk in chunks:
                shown += redactor.feed(chunk)
            redactor.finish()
        assert "sk-proj" not in shown and "EXAMPLE" not in shown, (chunks, shown)
        assert redactor.blocked_types == ["SECRET"]


def test_guard_scan_command_reads_stdin_and_writes_json_lines() -> None:
    lines = [json.dumps({"text": EVERY_TYPE}), "{broken", json.dumps({"text": "Order #A123"})]
    process = subprocess.run(
        [sys.executable, "-m", "lorastack.cli", "guard", "scan"],
        input="\n".join(lines),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    answers = [json.loads(line) for line in process.stdout.splitlines()]
    assert len(answers) == 3
    first = answers[0]
    assert {e["type"] for e in first["entities"]} == STOCK_ENTITIES
    for entity in first["entities"]:
        assert entity["action"] == "mask"
        assert EVERY_TYPE[entity["start"] : entity["end"]] not in first["redacted"]
    assert answers[1]["line"] == 2
    assert answers[2]["redacted"] == "Order #A123"
    assert "Traceback" not in process.stderr
