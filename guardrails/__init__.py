"""lorastack.guardrails: PII detection and masking for prompts, answers and training data.

A plain library: serve and train use it; it knows nothing of HTTP or engines.
A process builds one detector (its models load once) and gives it to each guard;
the process-wide settings the detector runs best with are the process owner's
to apply (`lorastack.guardrails.runtime`).

    detector = PresidioDetector()                     # one per process
    policy = PolicyStore(settings.policies_dir, settings.guard_policy).get("coffee-shop")
    guard = Guard(policy, detector, domain="coffee-shop")
    vault = Vault()                                   # one per conversation (request)
    safe = guard.protect_messages(messages, vault)    # masked before the model sees them
    answer = guard.protect_output(model_answer, vault).redacted
    redactor = guard.stream(vault)                    # or chunk by chunk:
    shown = redactor.feed(chunk) ... + redactor.finish()
"""

from lorastack.guardrails.audit import AuditEvent, AuditSink, JsonlAuditLog, MemoryAuditLog
from lorastack.guardrails.detector import Detector, PresidioDetector
from lorastack.guardrails.entities import (
    BUILTIN_ENTITIES,
    Action,
    CustomEntity,
    Direction,
    Finding,
)
from lorastack.guardrails.guard import (
    AppliedFinding,
    Guard,
    ProtectedMessages,
    ProtectedTexts,
    ScanResult,
)
from lorastack.guardrails.injection import find_injection
from lorastack.guardrails.leaks import LeakIndex, leak_index
from lorastack.guardrails.policy import GuardPolicy, PolicyStore, default_policy, load_policy
from lorastack.guardrails.streaming import StreamRedactor
from lorastack.guardrails.vault import Vault

__all__ = [
    "BUILTIN_ENTITIES",
    "Action",
    "AppliedFinding",
    "AuditEvent",
    "AuditSink",
    "CustomEntity",
    "Detector",
    "Direction",
    "Finding",
    "Guard",
    "GuardPolicy",
    "JsonlAuditLog",
    "LeakIndex",
    "MemoryAuditLog",
    "PolicyStore",
    "PresidioDetector",
    "ProtectedMessages",
    "ProtectedTexts",
    "ScanResult",
    "StreamRedactor",
    "Vault",
    "default_policy",
    "find_injection",
    "leak_index",
    "load_policy",
]
