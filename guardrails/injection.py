"""A screen for the common prompt-injection patterns in what users send (OWASP LLM01).

`find_injection(text)` names the kinds of pattern a text matches (`override`,
`extraction`, `role_play`, `markup`, `encoded`, `translation`), never the text. It
matches a normalised copy: NFKC, case folded, invisible characters dropped, letters
spaced or dotted out one by one joined (`i g n o r e`), and, as second copies,
leetspeak read as letters (`1gn0r3`), the text in ROT13 and reversed. A base64 blob
that decodes to text is screened too.

It is a signal, not a guarantee: patterns catch the phrasings attacks share and miss
paraphrases; an attacker who reads this file can avoid them. Its precision and recall
on a labelled set are in docs/guardrails.md (`lorastack guard eval-injection`).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from collections.abc import Iterable

# Kinds of pattern, as metrics, audit events and errors name them.
OVERRIDE = "override"
"""Told to drop its instructions: "ignore all previous instructions", "new rules:"."""
EXTRACTION = "extraction"
"""Asked for its instructions: "print your system prompt", "repeat the text above"."""
ROLE_PLAY = "role_play"
"""A persona without rules: "pretend you are DAN", "enable developer mode"."""
MARKUP = "markup"
"""Chat-template role markers and instructions hidden in HTML or markdown comments."""
ENCODED = "encoded"
"""An instruction in base64 (or ROT13, reversed), or a request to decode and obey."""
TRANSLATION = "translation"
"""Asked to translate (or summarise) its own instructions."""
CATEGORIES = (OVERRIDE, EXTRACTION, ROLE_PLAY, MARKUP, ENCODED, TRANSLATION)

_LONGEST_VARIANT = 8_000
"""Texts up to this long are also screened in ROT13 and reversed (cheap copies of rare
tricks; a long document is screened as written)."""

# A stretch of the same sentence between two parts of a pattern.
_GAP = r"[^.!?\n]{0,40}?"
_SMALL_GAP = r"[^.!?\n]{0,20}?"
_DROP = (
    r"(?:ignore|ignoring|disregard|forget|bypass|override|abandon|neglect|overlook|"
    r"set aside|throw out|discard|skip|drop)"
)
_EARLIER = (
    r"(?:previous|previously|prior|above|earlier|preceding|former|original|initial|old|"
    r"existing|all|any|every|your|the system'?s?|system|developer|safety|those|these)"
)
_RULES = (
    r"(?:instructions?|prompts?|rules|directives?|guidelines|guardrails|constraints|"
    r"programming|restrictions|commands|training|conditioning|limitations)"
)
_HIDDEN_ADJ = (
    r"(?:system|initial|original|hidden|secret|internal|developer|pre|first|full|"
    r"exact|confidential|underlying|starting|opening|base)"
)
_HIDDEN_NOUN = r"(?:prompt|instructions?|message|directives?|rules|guidelines|configuration)"
_SHOW = (
    r"(?:print|show|reveal|display|output|repeat|recite|tell|give|share|list|write|dump|"
    r"leak|expose|paste|spell out|echo|return|provide|disclose|type out|copy)"
)
# Not about the assistant's own instructions: "the original instructions for the grinder".
_NOT_ABOUT_IT = r"(?!\s+(?:for|of|on|about|that came|in the|to (?:use|set|assemble|install)))"

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (category, re.compile(pattern))
    for category, pattern in (
        # -- override ---------------------------------------------------------------
        (OVERRIDE, rf"\b{_DROP}\b{_GAP}\b{_EARLIER}\b{_SMALL_GAP}\b{_RULES}\b"),
        (
            OVERRIDE,
            r"\b(?:ignore|disregard|forget)\s+(?:everything|all|anything)\s+(?:above|before|"
            r"prior|previously|said|(?:that )?you (?:were|have been|'ve been) told)",
        ),
        (
            OVERRIDE,
            rf"\b(?:new|updated|revised|real|actual|true|override)\s+(?:system\s+)?{_RULES}"
            r"\s*(?:[:\-]|follow|apply|are)",
        ),
        (
            OVERRIDE,
            r"\bfrom now on,?\s+(?:you (?:are|must|will no longer|no longer|have no|shall)|"
            r"ignore|disregard|forget)\b",
        ),
        (
            OVERRIDE,
            r"\byour (?:new |real |true )?(?:instructions|rules|task|goal|purpose) "
            r"(?:is|are) now\b",
        ),
        (
            OVERRIDE,
            r"\b(?:do not|don't|never) (?:follow|obey|listen to) (?:your|the|any) " + _RULES,
        ),
        # French, Spanish, German, Italian, Portuguese.
        (
            OVERRIDE,
            r"\b(?:ignore[rz]?|oublie[rz]?)\s+(?:toutes\s+)?(?:les|tes|vos)\s+"
            r"(?:instructions|consignes|règles)",
        ),
        (
            OVERRIDE,
            r"\b(?:ignora|ignorar|olvida|olvidar)\s+(?:todas\s+)?(?:las|tus|sus)\s+instrucciones",
        ),
        (
            OVERRIDE,
            r"\b(?:ignorier\w*|vergiss|vergessen sie)\s+(?:alle\s+)?(?:\w+\s+)?"
            r"(?:anweisungen|instruktionen|regeln|vorgaben)",
        ),
        (OVERRIDE, r"\bignora\s+(?:tutte\s+)?le\s+istruzioni"),
        (OVERRIDE, r"\b(?:ignore|esqueça|esqueca)\s+(?:todas\s+)?as\s+instruções"),
        # -- extraction -------------------------------------------------------------
        (
            EXTRACTION,
            rf"\b{_SHOW}\b{_SMALL_GAP}\b(?:your|the|its|this|my|me your)\s+{_HIDDEN_ADJ}"
            rf"[\s-]*{_HIDDEN_NOUN}\b{_NOT_ABOUT_IT}",
        ),
        (EXTRACTION, r"\b(?:system|initial|hidden|secret|pre)[\s-]?prompt\b"),
        (
            EXTRACTION,
            rf"\b(?:{_SHOW}|what (?:is|are|was|were))\b{_SMALL_GAP}\byour\s+(?:instructions|"
            r"prompt|rules|directives|guidelines|configuration)\b"
            rf"{_NOT_ABOUT_IT}(?!\s+(?:say|mean))",
        ),
        (
            EXTRACTION,
            rf"\b(?:repeat|print|output|copy|reproduce|recite|echo|write out|show me|tell me|"
            rf"paste|dump|return)\b{_SMALL_GAP}\b(?:text|words|everything|content|messages?|"
            r"lines|all|instructions)\s+(?:above|before this|preceding|prior|that came before|"
            r"you were given|you received|at the (?:start|beginning|top))",
        ),
        (
            EXTRACTION,
            r"\bwhat (?:were|are|was|have) you (?:been )?(?:told|instructed|programmed|"
            r"prompted|configured)\b",
        ),
        (
            EXTRACTION,
            rf"\b{_RULES} (?:you were|you've been|you have been|you are) (?:given|told|programmed)",
        ),
        (
            EXTRACTION,
            rf"\b(?:what|which) {_RULES} (?:have|were|did|do) you (?:been )?"
            r"(?:given|told|receive|get|have)",
        ),
        (EXTRACTION, r"\b(?:beginning|starting|start|begin)\w* with [\"'“]?(?:you are|you're)\b"),
        (EXTRACTION, r"\b(?:prompt|invite|message) (?:système|systeme|del sistema|de sistema)\b"),
        (EXTRACTION, r"\bsystem-?prompt\w*"),
        # -- role play --------------------------------------------------------------
        (
            ROLE_PLAY,
            r"\b(?:you are|you're|act as|be|pretend to be|become|now you are|you will be)\s+"
            r"(?:now\s+)?(?:dan|dude|stan|aim)\b",
        ),
        (ROLE_PLAY, r"\b(?:dan mode|do anything now|jailbreak\w*|jailbroken)\b"),
        (
            ROLE_PLAY,
            r"\b(?:enable|activate|enter|switch to|turn on|unlock)\s+(?:the\s+)?(?:developer|"
            r"dev|god|debug|admin|jailbreak|dan|sudo|root|unrestricted|unfiltered)\s+mode\b",
        ),
        (
            ROLE_PLAY,
            rf"\b(?:pretend|imagine|act|roleplay|role-play|role play|behave|play the role)\b"
            rf"{_GAP}\b(?:unrestricted|unfiltered|uncensored|no (?:rules|restrictions|limits|"
            rf"filters?|guidelines|morals|ethics)|without (?:any )?(?:rules|restrictions|limits|"
            r"filters?|guidelines|censorship|ethics)|evil|not bound|no longer bound|"
            r"an? (?:ai|assistant|model|chatbot|llm) (?:that|who|which|with no|without))",
        ),
        (
            ROLE_PLAY,
            r"\byou (?:are|will be|'re) (?:now )?(?:no longer|not) (?:bound|restricted|limited|"
            r"an ai|a (?:support |customer service )?(?:assistant|bot))\b",
        ),
        (
            ROLE_PLAY,
            r"\b(?:bypass|disable|turn off|deactivate|circumvent|get around|evade|ignore)\s+"
            r"(?:your |the |all |any )?(?:safety |content |security |ethical )?(?:filters?|"
            r"guardrails|safeguards|moderation|censorship|restrictions|limitations)\b",
        ),
        (
            ROLE_PLAY,
            r"\b(?:fictional|hypothetical) (?:world|scenario|story|universe) where "
            r"(?:you|ai|an ai|there are no)\b",
        ),
        # -- markup -----------------------------------------------------------------
        (MARKUP, r"<\|?(?:im_start|im_end|endoftext|system|eot_id|start_header_id)\|?>"),
        (MARKUP, r"\[/?inst\]|\[/?system\]|</?(?:system|instructions?|sys)>|<<sys>>"),
        (
            MARKUP,
            r"(?:^|\n)\s*(?:#{1,6}|\*\*)?\s*(?:system|developer)\s*(?:prompt|message|override|"
            r"instructions?)?\s*\**\s*:\s*(?:you|ignore|disregard|new|forget|from now)",
        ),
        (
            MARKUP,
            r"<!--[\s\S]{0,400}?(?:instruction|prompt|assistant|\bai\b|ignore|disregard|reveal|system)",
        ),
        (MARKUP, r"\[//\]:\s*#|\[comment\]:\s*<>"),
        # -- encoded ----------------------------------------------------------------
        (
            ENCODED,
            r"\b(?:decode|base64|rot13|rot-13|reverse|unscramble|deobfuscate)\b[^.!?\n]{0,60}?\b"
            r"(?:follow|execute|obey|run|carry out|comply|act on|do what)\b",
        ),
        # -- translation ------------------------------------------------------------
        (
            TRANSLATION,
            r"\b(?:translate|summari[sz]e|paraphrase|rewrite)\b[^.!?\n]{0,30}?\b(?:your|the)\s+"
            r"(?:system prompt|instructions|prompt|rules|initial|original instructions|"
            r"everything above|text above|above instructions)",
        ),
    )
)

_INVISIBLE = re.compile(r"[\u00ad\u034f\u115f\u1160\u3164]")
_SPACED = re.compile(r"(?<!\w)(?:\w[ .\-_*]){3,}\w(?!\w)")
_SPACE = re.compile(r"[ \t\r\f\v]+")
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)
_LEETISH = re.compile(r"\b\w*[a-z]\w*\d\w*\b|\b\w*\d\w*[a-z]\w*\b")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


def _plain(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    text = _INVISIBLE.sub("", text).casefold()
    # `i g n o r e` or `i.g.n.o.r.e` written out one letter at a time.
    text = _SPACED.sub(lambda m: re.sub(r"[ .\-_*]", "", m.group()), text)
    return _SPACE.sub(" ", text)


def _variants(text: str) -> Iterable[str]:
    plain = _plain(text)
    yield plain
    if _LEETISH.search(plain) or "@" in plain or "$" in plain:
        yield plain.translate(_LEET)
    if len(plain) <= _LONGEST_VARIANT:
        yield codecs.encode(plain, "rot13")
        yield plain[::-1]


def _decoded_blobs(text: str) -> Iterable[str]:
    for match in _BASE64.finditer(text):
        blob = match.group()
        try:
            raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
            decoded = raw.decode("utf-8")
        except (binascii.Error, ValueError):
            continue
        if decoded and sum(c.isprintable() or c.isspace() for c in decoded) >= 0.9 * len(decoded):
            yield decoded


def _matches(text: str) -> set[str]:
    found: set[str] = set()
    for variant in _variants(text):
        for category, pattern in _PATTERNS:
            if category not in found and pattern.search(variant):
                found.add(category)
    return found


def find_injection(text: str) -> list[str]:
    """The kinds of injection pattern `text` matches, sorted; empty when none."""
    found = _matches(text)
    for decoded in _decoded_blobs(text):
        if _matches(decoded):
            found.add(ENCODED)
    return sorted(found)


def find_in_texts(texts: Iterable[str]) -> list[str]:
    """The kinds matched in any of `texts` (one request's user messages), sorted."""
    found: set[str] = set()
    for text in texts:
        found.update(find_injection(text))
    return sorted(found)
