"""What a preference run (kto, dpo) learnt from the feedback, and what it may have forgotten.

`lorastack eval` of a kto or dpo run (`train/evaluate.py`) measures two things:

- On the run's test split, held-out feedback: the preference accuracy and mean reward
  margin of the candidate and of the version it started from. A model's implicit reward
  for an answer is beta times how much likelier the model makes it than the base model
  does: log p_model(answer | prompt) - log p_base(answer | prompt), the base model being
  the one reference both share (measured against itself, the starting version would
  score zero). dpo: the share of pairs whose chosen answer gets the higher reward, and the
  mean of chosen minus rejected reward. kto: the share of answers whose reward has the
  sign of their label (up: above zero), and the mean reward of the answers marked up
  minus that of those marked down. `adapter_over_start` is the same with the starting
  version as the reference: the objective training optimised, as TRL's `eval_rewards/*`.
- Loss, brand rules and fact recall (the usual evaluation, by the publish gate's rules)
  on the test split of the data the starting version learnt from, to catch forgetting.
  That data is found by the dataset hash in the starting version's manifest (followed
  back through earlier preference runs to the version trained on chats or completions):
  at the data path its manifest records, or in any run folder beside this one. When none
  has that hash, the usual evaluation runs on the preferred answers of the held-out
  feedback instead (dpo: chosen; kto: marked up), and `loss_data` says why.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorastack.errors import LorastackError
from lorastack.manifest import AdapterManifest
from lorastack.registry import AdapterRegistry
from lorastack.train.config import PREFERENCE_MODES, ConfigError, TrainConfig
from lorastack.train.preference import to_preference_examples
from lorastack.train.run import RunPaths, check_prepared, dataset_sha256, load_splits
from lorastack.train.trainer import to_examples

_MAX_HOPS = 32  # preference runs started from preference runs, back to the first training


@dataclass
class Plan:
    """What the evaluation of one preference run measures, and on what."""

    start: AdapterManifest
    """The version the run started from."""
    start_folder: Path
    feedback: list[dict[str, Any]]
    """The held-out feedback (the run's test split) as preference examples."""
    test: list[dict[str, Any]]
    """Examples for loss, rules and facts: the original test split, or the feedback's
    preferred answers."""
    mode: str
    """The mode of `test` (instruct, sft or pretrain)."""
    loss_data: dict[str, Any] = field(default_factory=dict)

    @property
    def start_ref(self) -> str:
        return f"{self.start.domain}@v{self.start.version}"


def plan(paths: RunPaths, config: TrainConfig, registry: AdapterRegistry | None) -> Plan:
    """The starting version, the held-out feedback and the data to check forgetting on."""
    if registry is None:
        raise ConfigError("evaluating a kto or dpo run needs the registry it started from")
    try:
        start = registry.resolve(config.from_adapter or "")
    except LorastackError as error:
        raise ConfigError(f"cannot evaluate against {config.from_adapter}: {error}") from None
    feedback = to_preference_examples(
        load_splits(paths.data)["test"], config.mode, config.system_prompt
    )
    if not feedback:
        raise ConfigError("the test split is empty: nothing to evaluate on")
    folder = registry.version_dir(start.domain, start.version)
    original, where, reason = find_original(start, registry, paths.root.parent)
    if original is not None and where is not None:
        mode = str(original.training["mode"])
        test = to_examples(load_splits(where)["test"], mode, original.system_prompt)
        if test:
            loss_data = {
                "split": "original test",
                "version": f"{original.domain}@v{original.version}",
                "path": str(where),
                "dataset_sha256": original.dataset_sha256,
            }
            return Plan(start, folder, feedback, test, mode, loss_data)
        reason = f"the test split at {where} is empty"
    preferred = [
        {"prompt": e["prompt"], "completion": e.get("chosen", e.get("completion"))}
        for e in feedback
        if config.mode == "dpo" or e["label"]
    ]
    if not preferred:
        raise ConfigError(
            f"nothing to measure the loss on: {reason}, and the test split holds no answer "
            "marked up"
        )
    loss_data = {"split": "feedback (preferred answers)", "original_unreachable": reason}
    return Plan(start, folder, feedback, preferred, "instruct", loss_data)


def find_original(
    start: AdapterManifest, registry: AdapterRegistry, runs_dir: Path
) -> tuple[AdapterManifest | None, Path | None, str]:
    """The version whose training data `start` descends from, that data's prepared folder
    (found by its hash), and, when either is missing, why."""
    manifest = start
    for _ in range(_MAX_HOPS):
        parent = manifest.training.get("from_adapter")
        if manifest.training.get("mode") not in PREFERENCE_MODES or not parent:
            break
        try:
            manifest = registry.resolve(str(parent))
        except LorastackError as error:
            return None, None, f"{_ref(manifest)} started from {parent}, which is gone ({error})"
    if manifest.training.get("mode") not in ("instruct", "sft", "pretrain"):
        return None, None, f"{_ref(manifest)} was not trained by `lorastack train`"
    wanted = manifest.dataset_sha256
    if not wanted:
        return None, None, f"the manifest of {_ref(manifest)} records no dataset hash"
    recorded = manifest.training.get("data")
    candidates = [Path(recorded)] if recorded else []
    if runs_dir.is_dir():
        candidates += sorted(
            (p for p in runs_dir.glob("*/data")), key=lambda p: p.stat().st_mtime, reverse=True
        )
    for folder in candidates:
        if _holds(folder, wanted):
            return manifest, folder, ""
    return (
        None,
        None,
        f"no prepared dataset with the hash of {_ref(manifest)}'s data ({wanted[:12]}) at "
        f"{recorded or 'its recorded path'} or in the runs under {runs_dir}",
    )


def _ref(manifest: AdapterManifest) -> str:
    return f"{manifest.domain}@v{manifest.version}"


def _holds(folder: Path, sha256: str) -> bool:
    try:
        check_prepared(folder)
        return dataset_sha256(folder) == sha256
    except (ConfigError, OSError):
        return False


# -- scoring -------------------------------------------------------------------------


def _tokens(tokenizer: Any, prompt: Any, answer: Any, max_length: int) -> tuple[list[int], int]:
    """The prompt and answer as the chat template renders them (plain text: as written,
    the answer ended with EOS, as TRL trains it), and the answer's length in tokens. Too
    long: the prompt loses its start, then the answer its end."""
    if isinstance(prompt, str):
        prompt_text, whole_text = prompt, prompt + str(answer) + (tokenizer.eos_token or "")
    else:
        prompt_text = tokenizer.apply_chat_template(
            prompt, tokenize=False, add_generation_prompt=True
        )
        whole_text = tokenizer.apply_chat_template([*prompt, *answer], tokenize=False)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    whole_ids = tokenizer(whole_text, add_special_tokens=False)["input_ids"]
    shared = 0
    while shared < min(len(prompt_ids), len(whole_ids)) and prompt_ids[shared] == whole_ids[shared]:
        shared += 1
    answer_ids = whole_ids[shared:][: max_length - 1]
    head = whole_ids[:shared][-(max_length - len(answer_ids)) :]
    return [*head, *answer_ids], len(answer_ids)


def _answer_logps(
    model: Any,
    sequences: Sequence[tuple[list[int], int]],
    pad_id: int,
    batch_size: int,
    on_batch: Callable[[], object],
) -> list[float]:
    """log p(answer | prompt) of each sequence, summed over the answer's tokens."""
    import torch

    device = next(model.parameters()).device  # an evaluation trainer may have moved it
    logps: list[float] = []
    for start in range(0, len(sequences), batch_size):
        batch = sequences[start : start + batch_size]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (tokens, _) in enumerate(batch):
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        scores = torch.log_softmax(logits.float().cpu()[:, :-1], dim=-1)
        scores = scores.gather(-1, ids[:, 1:, None])[..., 0]
        for row, (tokens, answer) in enumerate(batch):
            logps.append(float(scores[row, len(tokens) - 1 - answer : len(tokens) - 1].sum()))
        on_batch()
    return logps


def _accuracy_margin(
    rewards: Sequence[float], labels: Sequence[bool] | None
) -> dict[str, float | None]:
    """dpo (`labels` None): rewards are chosen minus rejected, one per pair. kto: one per
    answer, with its label."""
    if labels is None:
        return {
            "accuracy": sum(r > 0 for r in rewards) / len(rewards),
            "margin": statistics.fmean(rewards),
        }
    agree = sum((r > 0) == label for r, label in zip(rewards, labels, strict=True))
    up = [r for r, label in zip(rewards, labels, strict=True) if label]
    down = [r for r, label in zip(rewards, labels, strict=True) if not label]
    margin = statistics.fmean(up) - statistics.fmean(down) if up and down else None
    return {"accuracy": agree / len(rewards), "margin": margin}


def measure(
    feedback_plan: Plan,
    mode: str,
    beta: float,
    tokenizer: Any,
    score_as: Callable[[str], AbstractContextManager[Any]],
    model: Any,
    start_who: str,
    *,
    max_length: int = 512,
    batch_size: int = 8,
    on_batch: Callable[[], object] = lambda: None,
) -> dict[str, Any]:
    """The preference metrics of `metrics.json`; `score_as(who)` makes `model` answer as
    `base`, `adapter` or `start_who` (the adapter holding the starting version)."""
    examples = feedback_plan.feedback
    answers = ("chosen", "rejected") if mode == "dpo" else ("completion",)
    sequences = [
        _tokens(tokenizer, e["prompt"], e[name], max_length) for e in examples for name in answers
    ]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    logps: dict[str, list[float]] = {}
    for who in ("base", start_who, "adapter"):
        with score_as(who):
            logps[who] = _answer_logps(model, sequences, pad, batch_size, on_batch)

    def rewards(who: str, reference: str) -> list[float]:
        ratios = [m - r for m, r in zip(logps[who], logps[reference], strict=True)]
        if mode == "dpo":  # chosen minus rejected, per pair
            return [beta * (c - r) for c, r in zip(ratios[::2], ratios[1::2], strict=True)]
        return [beta * ratio for ratio in ratios]

    labels = None if mode == "dpo" else [bool(e["label"]) for e in examples]
    return {
        "mode": mode,
        "beta": beta,
        "examples": len(examples),
        "started_from": feedback_plan.start_ref,
        "reference": "base model",
        "adapter": _accuracy_margin(rewards("adapter", "base"), labels),
        "start": _accuracy_margin(rewards(start_who, "base"), labels),
        "adapter_over_start": _accuracy_margin(rewards("adapter", start_who), labels),
        "loss_data": feedback_plan.loss_data,
    }


# -- report --------------------------------------------------------------------------


def _cell(value: float | None, percent: bool) -> str:
    if value is None:
        return "-"
    return f"{value:.0%}" if percent else f"{value:+.4f}"


def render(preference: dict[str, Any]) -> str:
    """The preference section of `report.md`."""
    kind = "pairs" if preference["mode"] == "dpo" else "labelled answers"
    rows = [
        ("adapter (candidate)", preference["adapter"]),
        (f"{preference['started_from']} (started from)", preference["start"]),
        ("adapter over the starting version", preference["adapter_over_start"]),
    ]
    lines = [
        "",
        "## Preference (held-out feedback)",
        "",
        f"{preference['examples']} {kind}, beta {preference['beta']}. Rewards are measured "
        "against the base model, the reference both models share; the last row against "
        "the starting version, the objective training optimised.",
        "",
        "| model | preference accuracy | reward margin |",
        "|---|---|---|",
        *(f"| {n} | {_cell(r['accuracy'], True)} | {_cell(r['margin'], False)} |" for n, r in rows),
        "",
    ]
    data = preference["loss_data"]
    if "original_unreachable" in data:
        lines.append(
            "Loss, rules and facts above were measured on the feedback's preferred answers, "
            f"not on the original data: {data['original_unreachable']}."
        )
    else:
        lines.append(
            f"Loss, rules and facts above were measured on the original test split of "
            f"{data['version']} ({data['path']}), to catch forgetting."
        )
    return "\n".join(lines) + "\n"
