"""`lorastack guard ...`: scan text for personal data, evaluate the guard."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lorastack.cli.context import err, guard_for, out, print_json
from lorastack.errors import LorastackError
from lorastack.guardrails.benchmark import SIZES, benchmark, benchmark_screens
from lorastack.guardrails.entities import Direction
from lorastack.guardrails.evaluation import LabelledExample, evaluate
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.leaks import MIN_WORDS
from lorastack.guardrails.runtime import freeze_loaded_objects
from lorastack.guardrails.threat_eval import evaluate_injection, evaluate_leaks
from lorastack.jsonl import read_objects

app = typer.Typer(
    help="Guardrails: scan text, evaluate PII detection, the injection screen, the leak check.",
    no_args_is_help=True,
)

DomainOption = Annotated[str | None, typer.Option(help="Use this domain's policy.")]
PolicyOption = Annotated[
    Path | None, typer.Option(help="Policy YAML file (overrides --domain).", dir_okay=False)
]
VocabularyOption = Annotated[
    bool,
    typer.Option(
        help="Leave unmasked the names that recur across the records (the business's own: "
        "its products, places, ships); each is listed."
    ),
]


def _scan_line(guard: Guard, line: str) -> dict[str, Any]:
    record = json.loads(line)
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise ValueError('expected an object with a "text" string')
    result = guard.scan(record["text"], Direction.INPUT)
    return {
        "text": result.text,
        "redacted": result.redacted,
        "entities": [
            {
                "type": a.type,
                "start": a.finding.start,
                "end": a.finding.end,
                "score": round(a.finding.score, 3),
                "action": a.action.value,
            }
            for a in result.findings
        ],
    }


@app.command()
def scan(domain: DomainOption = None, policy: PolicyOption = None) -> None:
    """Read JSON lines {"text": ...} on stdin; write one JSON line per input.

    Each output line: {"text", "redacted", "entities": [{"type", "start", "end",
    "score", "action"}]}, offsets into the original text. A bad line gets
    {"error", "line"} and scanning goes on.
    """
    guard = guard_for(domain, policy)
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            answer = _scan_line(guard, line)
        except json.JSONDecodeError as error:
            answer = {"error": f"not JSON: {error.msg}", "line": number}
        except (ValueError, LorastackError) as error:
            answer = {"error": str(error), "line": number}
        sys.stdout.write(json.dumps(answer, ensure_ascii=False) + "\n")
        sys.stdout.flush()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [record for _, record in read_objects(path)]


def _shipped(name: str) -> Path:
    return Path(str(resources.files("lorastack.guardrails").joinpath(f"data/{name}")))


def _row(name: str, report: dict[str, Any]) -> list[str]:
    return [
        name,
        f"{report['precision']:.3f}",
        f"{report['recall']:.3f}",
        f"{report['f1']:.3f}",
        f"{report['true_pos']}/{report['positives']}",
        f"{report['false_pos']}/{report['negatives']}",
    ]


def _by_category(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "none"


@app.command("eval-injection")
def evaluate_injection_command(
    data: Annotated[
        Path | None,
        typer.Argument(
            help='Labelled JSONL {"text", "label", "category", "split"}; default: the shipped set.',
            dir_okay=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Precision, recall and F1 of the prompt-injection screen, per split (dev: tuned on)."""
    try:
        report = evaluate_injection(_read_jsonl(data or _shipped("injection_eval.jsonl")))
    except ValueError as error:
        raise LorastackError(str(error)) from None
    if as_json:
        print_json(report)
        return
    table = Table("split", "precision", "recall", "F1", "caught", "false alarms")
    for name, row in [*report["splits"].items(), ("overall", report["overall"])]:
        table.add_row(*_row(name, row))
    out.print(table)
    for name, row in report["splits"].items():
        out.print(
            f"{name}: missed by category: {_by_category(row['missed'])}; "
            f"false alarms by category: {_by_category(row['false_alarms'])}"
        )


@app.command("eval-leaks")
def evaluate_leaks_command(
    data: Annotated[
        Path | None,
        typer.Argument(
            help='JSONL {"system_prompt", "answer", "leaked"}; default: the shipped set.',
            dir_okay=False,
        ),
    ] = None,
    min_words: Annotated[
        int, typer.Option(min=2, help="Shared words in a row that count as a leak.")
    ] = MIN_WORDS,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Detection rate and false positives of the system prompt leak check."""
    try:
        report = evaluate_leaks(_read_jsonl(data or _shipped("leak_eval.jsonl")), min_words)
    except ValueError as error:
        raise LorastackError(str(error)) from None
    if as_json:
        print_json(report)
        return
    out.print(
        f"runs of {min_words} words: detected {report['true_pos']} of {report['positives']} "
        f"leaks ({report['detection_rate']:.1%}); false positives {report['false_pos']} of "
        f"{report['negatives']} ({report['false_positive_rate']:.1%})"
    )
    out.print(
        f"missed by category: {_by_category(report['missed'])}; "
        f"false positives by category: {_by_category(report['false_alarms'])}"
    )


def read_labelled(path: Path) -> list[LabelledExample]:
    examples = []
    for number, record in read_objects(path):
        try:
            examples.append(LabelledExample.from_record(record))
        except ValueError as error:
            raise LorastackError(f"{path}:{number}: {error}") from None
    return examples


@app.command("eval")
def evaluate_command(
    data: Annotated[Path, typer.Argument(help='Labelled JSONL: {"text", "spans": [...]}.')],
    domain: DomainOption = None,
    policy: PolicyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Per-entity precision, recall and F2, and the fraction of values that leak."""
    examples = read_labelled(data)
    guard = guard_for(domain, policy)
    with err.status(f"scanning {len(examples)} examples"):
        report = evaluate(guard, examples).to_dict()
    if as_json:
        print_json(report)
        return
    table = Table("entity", "precision", "recall", "F2", "support", "false pos.")
    for name, row in [*report["entities"].items(), ("overall", report["overall"])]:
        table.add_row(
            name,
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f2']:.3f}",
            str(row["support"]),
            str(row["false_positives"]),
        )
    out.print(table)
    out.print(
        f"leak rate: {report['leak_rate']:.2%} ({report['leaked_values']} of "
        f"{report['labelled_values']} labelled values left in the text); negatives changed: "
        f"{report['negatives_changed_rate']:.2%}; {report['examples']} examples"
    )


@app.command()
def bench(
    repeats: Annotated[int, typer.Option(min=10, help="Scans per message size.")] = 200,
    cores: Annotated[int, typer.Option(min=1, help="CPU cores to allow (default one).")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Time per scan (p50/p99) of short, medium and long messages, on one core by default;
    then the prompt-injection and system-prompt leak screens on the same messages."""
    guard = guard_for(None)
    # Timed as the gateway runs: models loaded, then what they brought in frozen.
    guard.prepare()
    freeze_loaded_objects()
    # A plain line, not a spinner: its refresh thread would share the core being timed.
    err.print(f"timing {', '.join(f'{w}-word' for w in SIZES.values())} messages ...")
    timings = benchmark(guard, repeats, cores) + benchmark_screens(repeats, cores)
    if as_json:
        print_json([asdict(t) for t in timings])
        return
    table = Table("message", "words", "p50 ms", "p99 ms", "mean ms")
    for t in timings:
        table.add_row(
            t.name, str(t.words), f"{t.p50_ms:.2f}", f"{t.p99_ms:.2f}", f"{t.mean_ms:.2f}"
        )
    out.print(table)
    used = timings[0].cores if timings else None
    where = f"{used} core(s)" if used is not None else f"{cores} core(s) asked, not enforceable"
    out.print(f"{repeats} scans each, on {where}, default policy")
