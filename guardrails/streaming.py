"""Redact a streamed answer chunk by chunk, without ever leaking a split entity.

`feed` takes each chunk as the model produces it and returns the text that is
now safe to show; `finish` flushes the rest. The redactor holds back only the
tail that could still grow into an entity or a placeholder: the word being
written, the last few words (a name, an address in words), and a run that
looks like the start of a number, an IBAN, a spelled-out email or a
placeholder. Everything before that is scanned, with some already-released
text as context, and released with the policy applied. The hold-back is
bounded by `max_hold` plus `min_release` characters, so text flows a few words
behind the model.

Text is released in pieces of at least `min_release` characters: each release scans its
piece with the context before it, so releasing word by word scanned every character some
twenty times over, on the cores the engine needs. In pieces of a few words each character
is scanned a few times, for the same guarantee; until a piece is due, `hold` takes a chunk
without scanning anything. The first piece is the exception: it goes out as soon as any
text is safe, because the time to the first words is what a reader of a streamed answer
waits on (one small scan more an answer).

Given the domain's system prompt (a `LeakIndex`), the redactor also holds back a tail whose
words are so far a run of the prompt's words (`LeakIndex.hold_start`, fewer than its
`min_words`), however long in characters, and releases a copied span only once it is whole,
as `<SYSTEM_PROMPT>`: no run of the prompt long enough to count is ever released raw.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lorastack.guardrails.entities import Action, Direction, Finding
from lorastack.guardrails.leaks import blocked_error, with_leaks

if TYPE_CHECKING:
    from lorastack.guardrails.guard import AppliedFinding, Guard
    from lorastack.guardrails.leaks import LeakIndex
    from lorastack.guardrails.vault import Vault

# Tails that may continue into an entity, anchored at the end of the pending text.
_CONTINUABLE = [
    # a number being written: card, phone, SSN, IBAN digits, IP address
    re.compile(r"[+(]?[0-9][0-9 ()./\-]*$"),
    # an IBAN: country code, check digits, then groups
    re.compile(r"\b[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]{1,4})*[ ]?$"),
    # capitalised words: a name or a place that may go on
    re.compile(r"(?:\b[A-Z][\w'\u2019.-]*[ ]){1,3}$"),
    # an email spelled out in words: `jane dot doe at example dot`
    re.compile(
        r"(?:[\w.+-]+\s*(?:\s(?:dot|at)\s|[\[({<]\s*(?:dot|at)\s*[\])}>])\s*)+[\w.+-]*$",
        re.IGNORECASE,
    ),
    # the start of a placeholder `<PERSON_1>` or a redaction `<PERSON>`
    re.compile(r"<[A-Z0-9_]*$"),
]
_WORD_START = re.compile(r"\S+\s*$")
# Complete placeholders, and a started one at the very end.
_PLACEHOLDER_LIKE = re.compile(r"<[A-Z0-9_]{0,48}(?:>|$)")


class StreamRedactor:
    """Turns a stream of raw answer chunks into a stream of safe text."""

    def __init__(
        self,
        guard: Guard,
        vault: Vault,
        request_id: str | None = None,
        *,
        hold_words: int = 2,
        max_hold: int = 96,
        min_release: int = 32,
        context_chars: int = 80,
        restore: bool = True,
        leaks: LeakIndex | None = None,
    ) -> None:
        self.guard = guard
        self.vault = vault
        self.request_id = request_id
        self.hold_words = hold_words
        self.max_hold = max_hold
        self.min_release = min_release
        self.context_chars = context_chars
        self.restore = restore
        """False: released text keeps the user's values masked (whole placeholders: a
        placeholder is never cut), for a caller that restores, and keeps the masked text."""
        self.leaks = leaks if guard.policy.system_prompt_leak != "allow" else None
        """The domain's system prompt, looked for in the answer; None: not looked for."""
        self.findings: list[AppliedFinding] = []
        self._pending = ""
        self._context = ""
        self._done = False
        self._failed_open = False
        self._released_any = False

    @property
    def blocked_types(self) -> list[str]:
        return sorted({f.type for f in self.findings if f.action is Action.BLOCK})

    def feed(self, chunk: str) -> str:
        """Add a chunk of the model's answer; return the text now safe to show."""
        if self._done:
            raise RuntimeError("feed() after finish()")
        self._pending += chunk
        cut = self._hold_start(self._pending)
        return self._release(cut) if self._due(cut) else ""

    def hold(self, chunk: str) -> bool:
        """Take `chunk` without scanning when no piece is due yet; False (and nothing taken)
        when feeding it would release text. Cheap: a caller may skip a thread hop on it."""
        if self._done:
            raise RuntimeError("hold() after finish()")
        pending = self._pending + chunk
        if self._due(self._hold_start(pending)):
            return False
        self._pending = pending
        return True

    def finish(self) -> str:
        """The answer ended: release everything still held, redacted; audit the stream."""
        self._done = True
        rest = self._release(len(self._pending))
        self.guard.record(self.findings, Direction.OUTPUT, self.request_id, self._failed_open)
        return rest

    def _due(self, cut: int) -> bool:
        """Whether the text before `cut` is a piece to release now."""
        return cut >= self.min_release if self._released_any else cut > 0

    def _hold_start(self, pending: str) -> int:
        """Index in `pending` from which text must still be held back."""
        hold = len(pending)
        # The word being written, and the last few complete words.
        tail = pending
        for _ in range(self.hold_words + 1):
            match = _WORD_START.search(tail)
            if match is None:
                break
            hold = match.start()
            tail = tail[: match.start()]
        for pattern in _CONTINUABLE:
            match = pattern.search(pending)
            if match is not None:
                hold = min(hold, match.start())
        hold = max(hold, len(pending) - self.max_hold, 0)
        # A possible start of a copy of the system prompt: held whatever its length.
        if self.leaks is not None:
            leak = self.leaks.hold_start(pending)
            if leak is not None:
                hold = min(hold, leak)
        # Never cut through a placeholder, however long the run around it.
        for match in _PLACEHOLDER_LIKE.finditer(pending):
            if match.start() < hold < match.end():
                hold = match.start()
        return hold

    def _release(self, cut: int) -> str:
        if cut <= 0:
            return ""
        final = cut >= len(self._pending) and self._done
        window = self._context + self._pending
        offset = len(self._context)
        found = self.guard.find_or_fail_open(window)
        if found is None:
            self._failed_open = True
        findings = []
        for finding in found or []:
            if finding.end <= offset:
                continue  # entirely in text already released
            start = max(finding.start - offset, 0)
            findings.append(Finding(start, finding.end - offset, finding.type, finding.score))
        # A copy of the prompt starts after the released text: the hold-back saw to that.
        leaked = [
            Finding(f.start - offset, f.end - offset, f.type, f.score)
            for f in self.guard.find_leaks(window, self.leaks, from_char=offset)
        ]
        if leaked:
            findings = with_leaks(findings, leaked)
        if not final:
            # An entity reaching into the held tail is released only once it is whole.
            for finding in findings:
                if finding.end > cut:
                    cut = min(cut, finding.start)
        if cut <= 0:
            return ""
        released = [f for f in findings if f.end <= cut]
        safe, applied = self.guard.apply(
            self._pending[:cut], released, Direction.OUTPUT, self.vault
        )
        self.findings.extend(applied)
        self._context = (self._context + self._pending[:cut])[-self.context_chars :]
        self._pending = self._pending[cut:]
        self._released_any = True
        if any(a.action is Action.BLOCK for a in applied):
            raise blocked_error([a.type for a in applied if a.action is Action.BLOCK], "output")
        return self.guard.restore(safe, self.vault) if self.restore else safe
