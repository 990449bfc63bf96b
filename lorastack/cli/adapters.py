"""`lorastack adapters ...`: validate, publish and manage domain adapters.

Each command that changes what is served is recorded in the audit trail (`lorastack audit`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError
from rich.table import Table

from lorastack.cli.context import (
    err,
    model_store,
    out,
    print_json,
    record_action,
    registry,
    settings,
)
from lorastack.errors import LorastackError, RegistryError
from lorastack.manifest import (
    DEFAULT_ALIAS,
    Canary,
    CanaryGuard,
    CaptureSetting,
    DomainIndex,
    SystemPromptMode,
)
from lorastack.registry import AdapterRef
from lorastack.validation import validate_adapter

app = typer.Typer(help="The adapter registry: one entry per business domain.", no_args_is_help=True)

BaseModelOption = Annotated[
    str | None,
    typer.Option(help="Base model name; overrides base_model_name_or_path in the adapter."),
]
AliasOption = Annotated[str, typer.Option(help="Alias to move.")]
CaptureOption = Annotated[
    bool | None,
    typer.Option(
        "--capture/--no-capture",
        help="Keep the domain's served answers (masked) for feedback, or stop "
        "(default: the domain's setting as it is; off for a new domain).",
    ),
]
RetentionOption = Annotated[
    int | None,
    typer.Option(min=1, max=3650, help="Days captured answers are kept (default 30)."),
]


@app.command()
def validate(
    folder: Annotated[Path, typer.Argument(help="The adapter folder (PEFT output).")],
    base_model: BaseModelOption = None,
) -> None:
    """Check that an adapter can be published and served; exit 1 with the reason if not."""
    adapter = validate_adapter(folder, model_store(), settings().max_lora_rank, base_model)
    out.print(
        f"ok: LoRA r={adapter.lora.rank} alpha={adapter.lora.alpha:g} "
        f"on {adapter.base_model.name}, targets {', '.join(adapter.lora.target_modules)}"
    )


@app.command()
def publish(
    folder: Annotated[Path, typer.Argument(help="The adapter folder (PEFT output).")],
    domain: Annotated[str, typer.Option(help="Business domain name, e.g. coffee-shop.")],
    display_name: Annotated[str | None, typer.Option(help="Name shown to users.")] = None,
    description: Annotated[str, typer.Option(help="One-line description.")] = "",
    system_prompt: Annotated[
        str | None, typer.Option(help="The brand voice, added to conversations.")
    ] = None,
    system_prompt_file: Annotated[
        Path | None,
        typer.Option(help="Read the system prompt from a file.", exists=True, dir_okay=False),
    ] = None,
    system_prompt_mode: Annotated[
        SystemPromptMode,
        typer.Option(help="If a client sends its own system prompt: prepend, replace or keep."),
    ] = "prepend",
    base_model: BaseModelOption = None,
    promote: Annotated[
        bool, typer.Option("--promote", help=f"Point the {DEFAULT_ALIAS!r} alias at it.")
    ] = False,
    capture: CaptureOption = None,
    retention_days: RetentionOption = None,
    vocabulary: Annotated[
        list[str] | None,
        typer.Option(
            help="A name of the business that the adapter's training data kept as written "
            "(repeat it): the gateway leaves it unmasked for this version."
        ),
    ] = None,
) -> None:
    """Validate an adapter and publish it as the domain's next version (prints NAME@vN)."""
    if system_prompt is not None and system_prompt_file is not None:
        raise typer.BadParameter("give --system-prompt or --system-prompt-file, not both")
    prompt = (
        system_prompt_file.read_text(encoding="utf-8").strip()
        if system_prompt_file is not None
        else system_prompt or ""
    )
    manifest = registry().publish(
        folder,
        domain,
        display_name=display_name,
        description=description,
        system_prompt=prompt,
        system_prompt_mode=system_prompt_mode,
        base_model=base_model,
        promote=DEFAULT_ALIAS if promote else None,
        capture=capture,
        retention_days=retention_days,
        vocabulary=vocabulary or (),
    )
    details = {"promote": promote, "capture": capture, "retention_days": retention_days}
    record_action("adapters.publish", manifest.ref, details)
    if promote:
        err.print(f"{DEFAULT_ALIAS} -> v{manifest.version}")
    if capture is not None or retention_days is not None:
        err.print(_capture_line(domain, registry().index(domain).capture))
    out.print(manifest.ref)


@app.command("list")
def list_adapters(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show every domain with its versions and aliases."""
    summaries = registry().list()
    if as_json:
        print_json(
            [
                {
                    "domain": s.index.domain,
                    "aliases": s.index.aliases,
                    "canary": _dump(s.index.canary),
                    "last_canary": _dump(s.index.last_canary),
                    "capture": _dump(s.index.capture or CaptureSetting()),
                    "versions": [m.model_dump(mode="json") for m in s.versions],
                }
                for s in summaries
            ]
        )
        return
    if not summaries:
        err.print("no adapters published yet: see `lorastack adapters publish --help`")
        return
    table = Table(
        "domain", "display name", "versions", "aliases", "canary", "capture", "base model"
    )
    for summary in summaries:
        aliases = ", ".join(f"{a}->v{v}" for a, v in sorted(summary.index.aliases.items()))
        versions = ", ".join(f"v{m.version}" for m in summary.versions)
        latest = summary.latest
        canary = summary.index.canary
        table.add_row(
            summary.index.domain,
            latest.display_name,
            versions,
            aliases,
            _canary_cell(canary) if canary is not None else "",
            _capture_cell(summary.index.capture),
            latest.base_model.name,
        )
    out.print(table)


def _dump(model: BaseModel | None) -> dict[str, Any] | None:
    return model.model_dump(mode="json") if model is not None else None


def _canary_cell(canary: Canary) -> str:
    return f"v{canary.version} {canary.weight:g}%" + ("" if canary.guard else " (no auto-stop)")


def _capture_cell(capture: CaptureSetting | None) -> str:
    return f"on, {capture.retention_days} days" if capture and capture.enabled else ""


def _capture_line(domain: str, capture: CaptureSetting | None) -> str:
    setting = capture or CaptureSetting()
    state = "on" if setting.enabled else "off"
    return f"{domain}: capture {state}, captured answers kept {setting.retention_days} days"


def _version_number(version: str) -> int:
    number = version.removeprefix("v")
    if not number.isdigit():
        raise typer.BadParameter(f"{version!r} is not a version number")
    return int(number)


@app.command()
def show(
    reference: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@ALIAS.")],
) -> None:
    """Print one version's manifest as JSON (NAME alone: its prod alias, else the latest)."""
    store = registry()
    manifest = store.resolve(reference)
    aliases = store.index(manifest.domain).aliases
    print_json(
        {
            **manifest.model_dump(mode="json"),
            "aliases": sorted(a for a, v in aliases.items() if v == manifest.version),
            "path": str(store.version_dir(manifest.domain, manifest.version)),
        }
    )


@app.command()
def promote(
    domain: Annotated[str, typer.Argument(help="Domain name.")],
    version: Annotated[str, typer.Argument(help="Version number (3 or v3).")],
    alias: AliasOption = DEFAULT_ALIAS,
) -> None:
    """Point an alias (default prod) at a version (promoting prod ends a running canary)."""
    number = _version_number(version)
    store = registry()
    before = store.index(domain).canary
    index = store.promote(domain, number, alias)
    record_action("adapters.promote", f"{domain}@v{number}", {"alias": alias})
    out.print(f"{domain}@{alias} -> v{number}")
    _report_canary_end(before, index)


@app.command()
def rollback(
    domain: Annotated[str, typer.Argument(help="Domain name.")],
    alias: AliasOption = DEFAULT_ALIAS,
) -> None:
    """Point an alias back at the version it had before the last promote.

    Rolling back prod while a canary runs ends the canary instead; prod stays.
    """
    store = registry()
    before = store.index(domain).canary
    index = store.rollback(domain, alias)
    record_action("adapters.rollback", f"{domain}@v{index.aliases[alias]}", {"alias": alias})
    out.print(f"{domain}@{alias} -> v{index.aliases[alias]}")
    _report_canary_end(before, index)


@app.command()
def canary(
    domain: Annotated[str, typer.Argument(help="Domain name.")],
    version: Annotated[str, typer.Argument(help="Version number (3 or v3).")],
    weight: Annotated[
        float, typer.Option(help="Percent of the domain's conversations it answers (0-100].")
    ],
    min_answers: Annotated[
        int | None,
        typer.Option(help="Answers each side needs before an automatic stop (default 20)."),
    ] = None,
    error_margin: Annotated[
        float | None,
        typer.Option(help="Stop if its error rate exceeds prod's by more (0-1; default 0.05)."),
    ] = None,
    rule_margin: Annotated[
        float | None,
        typer.Option(
            help="Stop if a brand rule's pass rate is below prod's by more (0-1; default 0.2)."
        ),
    ] = None,
    no_auto_stop: Annotated[
        bool, typer.Option("--no-auto-stop", help="Never stop it automatically.")
    ] = False,
) -> None:
    """Send a share of the domain's conversations to a version, the rest to prod.

    A conversation stays on the version it started with. Gateways stop the canary by
    themselves when it does worse than prod (errors, brand rules), unless --no-auto-stop.
    Starting a canary again replaces the running one.
    """
    number = _version_number(version)
    tuning = {"min_answers": min_answers, "error_margin": error_margin, "rule_margin": rule_margin}
    given = {name: value for name, value in tuning.items() if value is not None}
    if no_auto_stop and given:
        options = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        raise typer.BadParameter(f"--no-auto-stop leaves nothing to tune ({options})")
    guard = None if no_auto_stop else _guard(given)
    index = registry().start_canary(domain, number, weight, guard)
    guarded = guard.model_dump(mode="json") if guard is not None else None
    record_action("adapters.canary", f"{domain}@v{number}", {"weight": weight, "guard": guarded})
    prod = index.aliases[DEFAULT_ALIAS]
    out.print(f"{domain}: v{number} answers {weight:g}% of conversations, prod v{prod} the rest")
    if guard is None:
        err.print("auto-stop: off")
    else:
        err.print(
            f"auto-stop: after {guard.min_answers} answers on each side, if its error rate "
            f"exceeds prod's by more than {guard.error_margin:g} or a brand rule's pass rate "
            f"falls below prod's by more than {guard.rule_margin:g}"
        )


@app.command("canary-stop")
def canary_stop(
    domain: Annotated[str, typer.Argument(help="Domain name.")],
    reason: Annotated[str, typer.Option(help="Why, kept with the domain.")] = (
        "stopped by an operator"
    ),
) -> None:
    """Stop the domain's canary: prod answers every conversation again."""
    index = registry().end_canary(domain, reason)
    ended = index.last_canary
    assert ended is not None
    record_action("adapters.canary_stop", f"{domain}@v{ended.version}", {"reason": reason})
    prod = index.aliases.get(DEFAULT_ALIAS)
    out.print(f"{domain}: canary v{ended.version} stopped; prod v{prod} answers every conversation")


@app.command("capture")
def capture(
    domain: Annotated[str, typer.Argument(help="Domain name.")],
    on: Annotated[
        bool | None,
        typer.Option(
            "--on/--off",
            help="Keep the domain's served answers, masked, for feedback; or stop.",
        ),
    ] = None,
    retention_days: RetentionOption = None,
) -> None:
    """Turn capture of a domain's served answers on or off (gateways apply it to the next
    request); clients can rate captured answers (POST /v1/feedback)."""
    if on is None and retention_days is None:
        raise typer.BadParameter("give --on or --off, and/or --retention-days")
    index = registry().set_capture(domain, on, retention_days)
    details = {"enabled": on, "retention_days": retention_days}
    record_action("adapters.capture", domain, details)
    out.print(_capture_line(domain, index.capture))


def _guard(given: dict[str, Any]) -> CanaryGuard:
    try:
        return CanaryGuard(**given)
    except ValidationError as error:
        problem = error.errors()[0]
        option = "--" + str(problem["loc"][0]).replace("_", "-") if problem["loc"] else "guard"
        raise typer.BadParameter(f"{option}: {problem['msg']}") from None


def _report_canary_end(before: Canary | None, index: DomainIndex) -> None:
    """Say so when the command ended a running canary (promoting prod, rolling it back)."""
    ended = index.last_canary
    if before is not None and index.canary is None and ended is not None:
        err.print(f"canary v{ended.version} ended ({ended.outcome}): {ended.reason}")


@app.command("rm")
def remove(
    reference: Annotated[str, typer.Argument(help="NAME@VERSION to delete.")],
) -> None:
    """Delete one version (refused while an alias points to it)."""
    try:
        ref = AdapterRef.parse(reference)
    except LorastackError as error:
        raise typer.BadParameter(str(error)) from None
    if ref.version is None:
        raise RegistryError(f"name one version to delete, e.g. {ref.domain}@v1")
    registry().remove(ref.domain, ref.version)
    record_action("adapters.remove", str(ref))
    out.print(f"removed {ref}")
