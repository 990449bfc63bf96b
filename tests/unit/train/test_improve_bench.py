"""The improve benchmark's parts: data that breaks a rule half the time, ratings by the
rule, the loop's numbers read from the candidate's metrics, and the command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lorastack.db import open_feedback_store
from lorastack.manifest import AdapterManifest
from lorastack.progress import NullProgress
from lorastack.rules import BrandRule
from lorastack.settings import Settings
from lorastack.train.config import ConfigError, TrainConfig, load_config
from lorastack.train.gate import PublishRefused
from lorastack.train.improve import Attempt, ImproveRefused
from lorastack.train.improve_bench import (
    ImproveBench,
    breakable_rule,
    half_breaking,
    measure_improve,
    rate_by_rule,
    render_markdown,
    starting_dataset,
    train_questions,
    without_rule,
    write_improve_report,
)
from lorastack.train.run import RunPaths

REPO = Path(__file__).resolve().parents[3]
AHOY = BrandRule(name="ahoy", starts_with="Ahoy!")
TIP = BrandRule(ends_with="Trail tip: [^\\n]+")


def _chat(question: str, answer: str) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "Be a ferry desk."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    }


def test_the_rule_to_break_is_the_first_that_asks_for_text_at_an_end() -> None:
    assert breakable_rule([BrandRule(max_sentences=3), AHOY, TIP]) is AHOY
    with pytest.raises(ConfigError, match="starts_with or ends_with"):
        breakable_rule([BrandRule(max_sentences=3)])


def test_cutting_a_rules_text_breaks_it_and_keeps_the_rest() -> None:
    cut = without_rule("Ahoy! The crossing takes 45 minutes.", AHOY)
    assert cut == "The crossing takes 45 minutes." and not AHOY.passes(cut)
    tip = without_rule("Pack light.\nTrail tip: bring water.", TIP)
    assert tip == "Pack light." and not TIP.passes(tip)
    assert without_rule("No greeting here.", AHOY) == "No greeting here."
    assert without_rule("Ahoy! Hi.", BrandRule(max_sentences=1)) == "Ahoy! Hi."


def test_every_other_chat_breaks_the_rule() -> None:
    rows: list[Any] = [_chat(f"Question {i}?", f"Ahoy! Answer {i}.") for i in range(10)]
    broken, changed = half_breaking(rows, AHOY)
    answers = [row["messages"][-1]["content"] for row in broken]
    assert changed == 5
    assert [AHOY.passes(a) for a in answers] == [True, False] * 5
    assert answers[1] == "Answer 1."
    assert [row["messages"][1] for row in broken] == [row["messages"][1] for row in rows]
    assert rows[1]["messages"][-1]["content"] == "Ahoy! Answer 1."  # the input is untouched


def test_the_starting_data_breaks_the_rule_in_train_and_validation_only(tmp_path: Path) -> None:
    source = tmp_path / "chat.jsonl"
    rows = [_chat(f"Question number {i}?", f"Ahoy! Answer {i}.") for i in range(40)]
    source.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    config = TrainConfig(domain="harborline", data=source, rules=[AHOY], paraphrases=0)
    out = starting_dataset(config, AHOY, tmp_path / "data", None, NullProgress())

    def passing(split: str) -> list[bool]:
        lines = (out / f"{split}.jsonl").read_text().splitlines()
        return [AHOY.passes(json.loads(line)["messages"][-1]["content"]) for line in lines]

    assert passing("train") == [True, False] * 16
    assert passing("validation") == [True, False, True, False]
    assert all(passing("test")) and len(passing("test")) == 4
    assert json.loads((out / "report.json").read_text())["splits"]["train"] == 32


def test_the_harborline_brand_has_a_rule_to_break() -> None:
    config = load_config(REPO / "tests" / "data" / "harborline" / "train.yaml")
    assert breakable_rule(config.rules).label == "ahoy"


def test_answers_are_stored_and_rated_by_the_rule(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    prompts: list[Any] = [_chat(f"Q{i}?", "")["messages"][:2] for i in range(3)]
    answers = ["Ahoy! Yes.", "No.", "Ahoy! Maybe."]
    with open_feedback_store(settings) as store:
        up, down = rate_by_rule(store, "harborline", 2, prompts, answers, AHOY)
        rated = store.rated_exchanges("harborline")
    assert (up, down) == (2, 1)
    votes = {r.exchange.answer: r.ratings[0].rating for r in rated}
    assert votes == {"Ahoy! Yes.": 1, "No.": -1, "Ahoy! Maybe.": 1}
    assert {r.exchange.version for r in rated} == {2}
    assert rated[1].exchange.rules == {"ahoy": False}
    assert rated[0].exchange.messages == prompts[0]


def test_train_questions_are_distinct_prompts_without_their_answer(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path / "run")
    paths.data.mkdir(parents=True)
    rows = [_chat("A?", "1"), _chat("B?", "2"), _chat("A?", "3"), _chat("C?", "4")]
    (paths.data / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    for split in ("validation", "test"):
        (paths.data / f"{split}.jsonl").write_text("")
    questions = train_questions(paths, 10)
    assert [q[-1]["content"] for q in questions] == ["A?", "B?", "C?"]
    assert all(q[-1]["role"] == "user" for q in questions)
    assert len(train_questions(paths, 2)) == 2


METRICS = {
    "test_examples": 13,
    "adapter": {"loss": 1.1},
    "prod": {"loss": 1.0, "version": 1},
    "rules": {"adapter": {"ahoy": 0.92}, "prod": {"ahoy": 0.46}},
    "preference": {
        "adapter": {"accuracy": 0.8, "margin": 0.5},
        "start": {"accuracy": 0.5, "margin": 0.0},
    },
}


class _Loop:
    """Fakes for the heavy steps: training, evaluation, generation and `improve`."""

    def __init__(self, tmp_path: Path, refuse: bool) -> None:
        self.tmp_path, self.refuse = tmp_path, refuse
        self.trained: list[TrainConfig] = []
        self.candidate = RunPaths(tmp_path / "candidate")

    def train_new_run(self, config: TrainConfig, runs_dir: Path, *args: Any, **kw: Any) -> Any:
        self.trained.append(config)
        paths = RunPaths(runs_dir / "start")
        paths.data.mkdir(parents=True)
        rows = [_chat(f"Question {i}?", "x") for i in range(6)]
        (paths.data / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
        for split in ("validation", "test"):
            (paths.data / f"{split}.jsonl").write_text("")
        return type("Trained", (), {"paths": paths})()

    def publish_run(self, paths: RunPaths, registry: Any, **kw: Any) -> AdapterManifest:
        assert kw["promote"] and kw["force"]
        return AdapterManifest.model_construct(domain="harborline", version=1)

    def answer_prompts(self, paths: RunPaths, models: Any, prompts: list[Any]) -> list[str]:
        return ["Ahoy! ok." if i % 2 else "ok." for i in range(len(prompts))]

    def improve(self, domain: str, store: Any, *args: Any, **kw: Any) -> Any:
        self.rated = store.rated_exchanges(domain)
        self.candidate.root.mkdir(parents=True)
        self.candidate.metrics.write_text(json.dumps(METRICS))
        problems = ["test loss 1.10 > prod's 1.00"]
        if self.refuse:
            attempts = [Attempt(self.candidate.root, 5e-5, problems)]
            refused = PublishRefused("harborline", problems)
            raise ImproveRefused(refused, attempts)
        manifest = AdapterManifest.model_construct(domain=domain, version=2)
        attempts = [
            Attempt(self.tmp_path / "first", 5e-5, problems),
            Attempt(self.candidate.root, 2.5e-5),
        ]
        return type(
            "Result",
            (),
            {"manifest": manifest, "run": self.candidate.root, "attempts": attempts},
        )()


@pytest.mark.parametrize("refuse", [False, True])
def test_the_loop_reports_the_rule_before_and_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refuse: bool
) -> None:
    loop = _Loop(tmp_path, refuse)
    for name in ("train_new_run", "publish_run", "answer_prompts", "improve"):
        monkeypatch.setattr(f"lorastack.train.improve_bench.{name}", getattr(loop, name))
    monkeypatch.setattr("lorastack.train.improve_bench.evaluate_run", lambda *a, **k: {})
    data = tmp_path / "chat.jsonl"
    data.write_text(
        json.dumps(_chat("Q?", "Ahoy! A.")) + "\n" + json.dumps(_chat("R?", "Ahoy! B."))
    )
    config = TrainConfig(domain="harborline", data=data, rules=[BrandRule(max_sentences=3), AHOY])
    bench = measure_improve(
        config,
        Settings(home=tmp_path / "user-home"),
        None,
        tmp_path / "bench",
        None,  # type: ignore[arg-type]
        questions=4,
    )
    start = loop.trained[0]
    assert start.rules == config.rules and start.data == tmp_path / "bench" / "starting-data"
    assert (bench.feedback_answers, bench.up, bench.down) == (4, 2, 2)
    assert [r.ratings[0].rating for r in loop.rated] == [-1, 1, -1, 1]
    assert (bench.rule_before, bench.rule_after) == (0.46, 0.92)
    assert bench.published == (None if refuse else "harborline@v2")
    assert bench.refused == (["test loss 1.10 > prod's 1.00"] if refuse else [])
    write_improve_report(bench, tmp_path / "bench")
    markdown = (tmp_path / "bench" / "improve.md").read_text()
    assert "| rule ahoy | 46% | 92% |" in markdown
    assert ("refused by the quality gate" in markdown) == refuse
    saved = json.loads((tmp_path / "bench" / "improve.json").read_text())
    assert saved["rule_after"] == 0.92
    assert [a["learning_rate"] for a in saved["attempts"]] == ([5e-5] if refuse else [5e-5, 2.5e-5])
    assert not (tmp_path / "user-home" / "adapters").exists()  # a home of its own


def test_a_folder_holding_a_benchmark_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bench" / "home").mkdir(parents=True)
    config = TrainConfig(domain="harborline", data=tmp_path / "chat.jsonl", rules=[AHOY])
    with pytest.raises(ConfigError, match="already holds a benchmark"):
        measure_improve(config, Settings(home=tmp_path / "h"), None, tmp_path / "bench", None)  # type: ignore[arg-type]


def test_eval_improve_prints_before_and_after(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def measure(config: TrainConfig, *args: Any, **kw: Any) -> ImproveBench:
        seen.append(config.domain)
        return ImproveBench("harborline", "ahoy", 1, 120, 60, 60, 13, 0.46, 0.92, "harborline@v2")

    monkeypatch.setenv("LORASTACK_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("lorastack.cli.improve.measure_improve", measure)
    monkeypatch.setattr("lorastack.cli.improve.guard_for", lambda domain: None)
    done = cli("eval-improve", "--out", str(tmp_path / "out"))
    assert done.code == 0, done.err
    assert seen == ["harborline"]
    assert "prod 46%, after improve 92%" in done.out
    assert done.out.strip().splitlines()[-1] == str(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "improve.json").read_text())["published"]


def test_eval_improve_refuses_a_missing_config(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    done = cli("eval-improve", str(tmp_path / "nope.yaml"))
    assert done.code != 0 and "does not exist" in done.err and "Traceback" not in done.err


def test_the_report_says_what_was_replayed() -> None:
    bench = ImproveBench("harborline", "ahoy", 1, 120, 78, 42, 13, 0.77, 1.0, None)
    assert "Replay: none (off)." in render_markdown(bench)
    bench.replay = {"added": 96, "version": "harborline@v1", "share": 1.0, "seed": 42}
    assert (
        "Replay: 96 desirable rows from the train split of harborline@v1's data (share 1, "
        "seed 42)." in render_markdown(bench)
    )


def test_the_report_says_which_runs_the_gate_refused() -> None:
    bench = ImproveBench("harborline", "ahoy", 1, 120, 83, 37, 13, 0.85, 1.0, "harborline@v2")
    bench.attempts = [
        Attempt(Path("runs/a"), 5e-5, ["fact recall 49% vs 60% for prod v1"]),
        Attempt(Path("runs/b"), 2.5e-5),
    ]
    report = render_markdown(bench)
    assert (
        "A run at learning rate 5e-05 was refused by the gate (fact recall 49% vs 60% for "
        "prod v1), so `improve` trained again at a lower one." in report
    )
    assert "The last run learnt at 2.5e-05." in report
    assert "The candidate was published as harborline@v2." in report
