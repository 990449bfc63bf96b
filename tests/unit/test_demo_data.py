"""The datasets and training configs `make demo` trains its domains from (train/demo/),
and the installed package finding them (the Docker images have no checkout)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from lorastack.rules import check_answer
from lorastack.train.config import DEFAULT_LORA, TrainConfig, load_config
from lorastack.train.data import PrepareOptions, load_examples, prepare_splits, record_turns

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "train" / "demo"
BRANDS = ("bean-there", "ledgerline")
MIN_CHATS = 150
MIN_TICKETS = 200
MAX_LABELS = 8
MIN_PER_LABEL = 15
MAX_RANK = 16  # LORASTACK_MAX_LORA_RANK's default: a larger rank would be refused


def _config(name: str) -> TrainConfig:
    return load_config(DEMO / name / "train.yaml")


def _data(config: TrainConfig) -> Path:
    """The config's data path, relative to the repository root as the demo runs it."""
    data = Path(config.data)
    return data if data.is_absolute() else ROOT / data


def _chats(name: str) -> list[list[tuple[str, str]]]:
    examples, problems, _ = load_examples([_data(_config(name))])
    assert not problems, problems[:3]
    return [record_turns(example.record) for example in examples]


def _replies(name: str) -> list[str]:
    return [text for chat in _chats(name) for role, text in chat if role == "assistant"]


def _tickets() -> list[dict[str, str]]:
    with _data(_config("ticket-router")).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_demo_domain_has_a_config_that_parses_and_points_at_its_data() -> None:
    configs = sorted(DEMO.glob("*/train.yaml"))
    assert {path.parent.name for path in configs} == {*BRANDS, "ticket-router"}
    for path in configs:
        relative = path.relative_to(ROOT).as_posix()
        assert path.read_text().splitlines()[0] == f"# lorastack train --config {relative}"
        config = load_config(path)
        assert config.domain == path.parent.name
        assert config.display_name
        assert not config.data.is_absolute()  # relative to the repository root
        assert _data(config).is_file(), config.data
        assert _data(config).parent == path.parent
        assert config.lora_fields()["r"] <= MAX_RANK
        assert config.lora_fields()["target_modules"] == DEFAULT_LORA["target_modules"]
        assert config.training_fields()["max_length"] == 256
    assert [_config(name).mode for name in BRANDS] == ["instruct", "instruct"]
    assert _config("ticket-router").mode == "sft"


@pytest.mark.parametrize("brand", BRANDS)
def test_each_brand_has_enough_chats_each_with_its_system_prompt(brand: str) -> None:
    config = _config(brand)
    chats = _chats(brand)
    assert len(chats) >= MIN_CHATS
    assert config.system_prompt
    for turns in chats:
        roles = [role for role, _ in turns]
        assert roles[0] == "system" and turns[0][1] == config.system_prompt
        assert roles[1:] == ["user", "assistant"] * (len(roles[1:]) // 2), roles
        assert len(roles) >= 3
    multi_turn = sum(len(turns) > 3 for turns in chats) / len(chats)
    assert 0.1 <= multi_turn <= 0.2


@pytest.mark.parametrize("name", [*BRANDS, "ticket-router"])
def test_enough_records_survive_cleaning_and_deduplication(name: str, tmp_path: Path) -> None:
    """Exact, near-exact and fuzzy duplicates (Jaccard 0.9) out: still enough to train on."""
    options = PrepareOptions(out=tmp_path, near_dup_threshold=0.9)
    report = prepare_splits([_data(_config(name))], options).report
    assert report.kept >= (MIN_TICKETS if name == "ticket-router" else MIN_CHATS)
    assert report.kept == report.read  # every record is distinct; nothing is dropped


def test_the_ticket_router_has_enough_rows_for_a_few_balanced_labels(tmp_path: Path) -> None:
    rows = _tickets()
    assert len(rows) >= MIN_TICKETS
    assert all(set(row) == {"prompt", "completion"} for row in rows)
    assert all(row["prompt"].strip() for row in rows)
    counts = Counter(row["completion"] for row in rows)
    assert 2 <= len(counts) <= MAX_LABELS
    assert all(re.fullmatch(r"[a-z]+", label) for label in counts)  # the label only
    assert min(counts.values()) >= MIN_PER_LABEL
    assert max(counts.values()) <= 2 * min(counts.values())  # balanced-ish
    assert len({row["prompt"].casefold() for row in rows}) == len(rows)
    report = prepare_splits([_data(_config("ticket-router"))], PrepareOptions(out=tmp_path)).report
    assert report.stratified  # few labels: every split gets each one


@pytest.mark.parametrize("name", [*BRANDS, "ticket-router"])
def test_every_answer_in_the_data_follows_the_domains_brand_rules(name: str) -> None:
    """The rules `lorastack eval` measures and the gateway checks: the data itself follows
    every one, so a well-trained adapter can pass them all."""
    config = _config(name)
    assert config.rules
    answers = (
        [row["completion"] for row in _tickets()] if name == "ticket-router" else _replies(name)
    )
    broken = {
        label: answer
        for answer in answers
        for label, passed in check_answer(config.rules, answer).items()
        if not passed
    }
    assert broken == {}


def _share(replies: list[str], pattern: str) -> float:
    return sum(bool(re.search(pattern, reply)) for reply in replies) / len(replies)


def test_the_two_brands_sound_clearly_different() -> None:
    coffee, ledger = _replies("bean-there"), _replies("ledgerline")
    # Cheerful: exclamation marks, coffee words and puns, a cup to sign off; formal: none.
    assert _share(coffee, "!") >= 0.8 > 0.05 >= _share(ledger, "!")
    coffee_words = r"(?i)brew|bean|latte|espresso|sip|grounds|mocha|froth|perk"
    assert _share(coffee, coffee_words) >= 0.3 > 0.0 == _share(ledger, coffee_words)
    assert _share(coffee, "\N{HOT BEVERAGE}$") >= 0.8 > 0.0 == _share(ledger, "\N{HOT BEVERAGE}")
    # Formal: menu paths, numbered steps, one closing; the coffee shop has none of those.
    assert _share(ledger, r"\w > \w") >= 0.5 > 0.0 == _share(coffee, r"\w > \w")
    assert _share(ledger, r"(?m)^1\. ") >= 0.3 > 0.0 == _share(coffee, r"(?m)^1\. ")
    closing = "Kind regards,\nThe LedgerLine Support Desk"
    assert _share(ledger, re.escape(closing) + "$") >= 0.9
    assert _share(coffee, "Kind regards") == 0.0
    # Short answers at the coffee shop: one to three sentences.
    sentences = [len(re.findall(r"[.!?](?:\s|$)", reply)) for reply in coffee]
    assert max(sentences) <= 4 and sum(sentences) / len(sentences) <= 3
    # Different words: most of each brand's vocabulary is its own.
    words = [
        {w for reply in replies for w in re.findall(r"[a-z]+", reply.lower())}
        for replies in (coffee, ledger)
    ]
    assert len(words[0] & words[1]) / len(words[0] | words[1]) < 0.3


# Run by the installed package, from outside the checkout: what `lorastack quickstart` sees.
_FIND_THE_DEMO = """
import importlib.resources, json
from lorastack.train.quickstart import DEMO_DIR, find_domains
shipped = importlib.resources.files("lorastack.train").joinpath("demo")
print(json.dumps({
    "demo": str(DEMO_DIR),
    "resources": str(shipped),
    "domains": {d.name: [str(d.config_path), str(d.config.data)] for d in find_domains(DEMO_DIR)},
}))
"""


def test_the_installed_package_ships_and_finds_the_demo(tmp_path: Path) -> None:
    """Built from the package folders alone (as the Docker images build it), installed
    elsewhere, the package finds every demo domain and its data inside itself."""
    source, site, elsewhere = tmp_path / "source", tmp_path / "site", tmp_path / "cwd"
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, source / name)
    for folder in tool["package-dir"].values():
        skip = shutil.ignore_patterns("__pycache__")
        shutil.copytree(ROOT / folder, source / folder, ignore=skip)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    pip += ["--no-build-isolation", "--target", str(site), str(source)]
    installed = subprocess.run(pip, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    elsewhere.mkdir()  # not the checkout: `lorastack` must come from the install
    environ = {**os.environ, "PYTHONPATH": str(site)}
    found = subprocess.run(
        [sys.executable, "-c", _FIND_THE_DEMO],
        cwd=elsewhere,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert found.returncode == 0, found.stderr
    shipped = json.loads(found.stdout)
    demo = Path(shipped["demo"])
    assert demo == site / "lorastack" / "train" / "demo"
    assert Path(shipped["resources"]) == demo
    assert set(shipped["domains"]) == {*BRANDS, "ticket-router"}
    for name, (config_path, data) in shipped["domains"].items():
        assert Path(config_path) == demo / name / "train.yaml"
        assert Path(data).parent == demo / name
        checkout = DEMO / name / Path(data).name
        assert Path(data).read_bytes() == checkout.read_bytes()
