"""Secrets pasted into a chat: API keys, access tokens, private keys, passwords (`SECRET`).

Provider formats come from `detect-secrets`' plugins: their `denylist` regexes
(AWS access key ids, GitHub, GitLab, Slack, Stripe, OpenAI, JWT, private key
headers, basic-auth URLs, SendGrid, Twilio, ...) and its Shannon entropy. Its
scanners themselves do not fit a chat message: `scan_line` runs every plugin
(9 ms for a 50-word message on one core, with network verification where a
filter asks for it), its keyword plugin alone costs 0.4 ms, and its entropy
plugins only look inside quoted strings (source code). So the regexes run here,
behind one cheap prefilter, and each match is widened to the whole token (the
Stripe regex stops after 24 characters of a longer key).

Written here, where detect-secrets has nothing for chat text:

- newer key formats: Stripe test keys, `sk-proj-` / `sk-ant-` style keys,
  Google API keys, Hugging Face tokens;
- a random-looking token after a cue ("api key", "token", "secret", "bearer");
- a long random-looking token alone (upper and lower case and digits, base64
  entropy over detect-secrets' own limit, 4.5; hex alone never: commit hashes);
- passwords given in context ("my password is hunter2!", "pwd: ...",
  "passcode 482913"); a value that is a plain word counts only after `:` or `=`
  ("my password is wrong" is a complaint, not a password);
- PINs ("PIN is 4821", 4 to 8 digits): a card or account PIN is never needed
  by a support assistant and together with card details enables fraud. Not
  "PIN code" with six digits: that is an Indian postal code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from lorastack.guardrails.entities import SECRET

if TYPE_CHECKING:
    from presidio_analyzer import EntityRecognizer

# Scores: a provider's format is near certain; a value after a cue likely;
# a random-looking token alone only plausible.
FORMAT_SCORE = 0.95
CUE_SCORE = 0.85
ENTROPY_SCORE = 0.6
# A URL with a password in it is redacted whole, at the highest score: the email
# recognizer reads `password@host.com` as an address (score 1.0) and must not win.
BASIC_AUTH_SCORE = 1.0

# Cheap tests first (plain substring and length checks, no regex over the whole
# message): most messages have no word of 16 characters, no key block, no URL
# with a password and no password or PIN cue, and then nothing else runs.
_KEY_RUN = re.compile(r"[\w\-+/=]{16}")
_PASSWORD_CUES = ("pass", "pwd", "pw")


def _has_long_token(text: str) -> bool:
    return any(len(word) >= 16 and _KEY_RUN.search(word) for word in text.split())


_TOKEN_CHARS = "A-Za-z0-9_\\-+/="  # noqa: S105  (a character class)
_TOKEN_TAIL = re.compile(rf"[{_TOKEN_CHARS}]*")
# Backwards only over what starts a token: not `key=` or `token:` before it.
_TOKEN_HEAD = re.compile(r"[A-Za-z0-9_\-]*$")
_EXTRA_FORMATS = (
    r"\b[rs]k_test_[0-9a-zA-Z]{24,}",  # Stripe test keys (detect-secrets: live ones)
    r"\bsk-(?:proj|ant|svcacct|admin)-[\w\-]{20,}",  # OpenAI project, Anthropic keys
    r"\bsk-[A-Za-z0-9]{32,}",  # OpenAI-style keys without detect-secrets' marker
    r"\bAIza[0-9A-Za-z_\-]{35}",  # Google API keys
    r"\bhf_[A-Za-z0-9]{30,}",  # Hugging Face tokens
)
_KEY_BLOCK_REST = re.compile(
    r"(?:[A-Z ]*-----)?(?:\s+[A-Za-z0-9+/=]{16,})*(?:\s+-----END [A-Z0-9 ]*-----)?"
)
_URL_REST = re.compile(r"[^\s<>\"']*")
_JWT_REST = re.compile(r"[\w\-+/=.]*")
_URL_HEAD = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*$")
_CUED_TOKEN = re.compile(
    r"\b(?:(?:api|access|secret|private)?[ _-]?key|secret|client[ _-]?secret|"
    r"(?:access|auth|bearer|api|refresh)?[ _-]?token|bearer|authorization)"
    rf"(?:\s+(?:is|was))?[\s:=\"']{{1,3}}([{_TOKEN_CHARS}.]{{16,}})",
    re.IGNORECASE,
)
_LONE_TOKEN = re.compile(rf"(?<![{_TOKEN_CHARS}])[{_TOKEN_CHARS}]{{32,}}")
_HEX = frozenset("0123456789abcdefABCDEF-")
_PASSWORD = re.compile(
    r"(?<![\w/.-])(?:pass(?:word|wd|code|phrase)|pwd|pw)s?(?=[\s:=])"
    r"(?:(?:\s+[\w@.'\u2019-]+){0,3}?\s*(?P<sep>\bis\b|\bwas\b|\bto\b|[:=])|\s+(?:is\s+)?now\b)?"
    r"\s*(?P<value>[^\s?,.;:]\S{3,63})",
    re.IGNORECASE,
)
_PIN = re.compile(
    r"\bpin(?P<code>\s*code|\s*number|\s*no\.?)?\b(?:\s+is|\s*[:=#])?\s*(?P<value>\d{4,8})\b",
    re.IGNORECASE,
)
_TRAILING = ".,;:?)]}\"'\u2019"
_PLACEHOLDER = re.compile(r"^(?:[*x•.#_-]+|<[^>]*>|\[[^\]]*\]|\{[^}]*\})$", re.IGNORECASE)
_HAS_DIGIT_OR_SYMBOL = re.compile(r"[\d!@#$%^&*+=?~|\\/_-]")


def _denylist(plugin: type) -> list[re.Pattern[str]]:
    """A plugin's regexes: a class attribute (typed upstream as an abstract property)."""
    return list(vars(plugin)["denylist"])


def _detect_secrets_formats() -> list[tuple[re.Pattern[str], str]]:
    """detect-secrets' provider regexes that fit free text, each with how to span it."""
    from detect_secrets.plugins import (
        aws,
        azure_storage_key,
        discord,
        github_token,
        gitlab_token,
        jwt,
        mailchimp,
        openai,
        pypi_token,
        sendgrid,
        slack,
        square_oauth,
        stripe,
        telegram_token,
        twilio,
    )
    from detect_secrets.plugins.basic_auth import BasicAuthDetector
    from detect_secrets.plugins.private_key import PrivateKeyDetector

    token_plugins = [
        github_token.GitHubTokenDetector,
        gitlab_token.GitLabTokenDetector,
        slack.SlackDetector,
        stripe.StripeDetector,
        openai.OpenAIDetector,
        pypi_token.PypiTokenDetector,
        sendgrid.SendGridDetector,
        discord.DiscordBotTokenDetector,
        telegram_token.TelegramBotTokenDetector,
        twilio.TwilioKeyDetector,
        square_oauth.SquareOAuthDetector,
        mailchimp.MailchimpDetector,
        azure_storage_key.AzureStorageKeyDetector,
    ]
    # AWS: only the access key id; its other regexes need a quoted assignment (code).
    formats = [(_denylist(aws.AWSKeyDetector)[0], "token")]
    formats += [(regex, "token") for plugin in token_plugins for regex in _denylist(plugin)]
    formats += [(regex, "jwt") for regex in _denylist(jwt.JwtTokenDetector)]
    formats += [(regex, "key-block") for regex in _denylist(PrivateKeyDetector)]
    formats += [(regex, "url") for regex in _denylist(BasicAuthDetector)]
    # detect-secrets follows RFC 3986 (`&`, `!` in a password are percent-encoded); people
    # paste them as they are.
    formats += [(re.compile(r"://[^\s:/?#@]+:[^\s/?#@]+@"), "url")]
    formats += [(re.compile(regex), "token") for regex in _EXTRA_FORMATS]
    return formats


class _Entropy:
    """detect-secrets' Shannon entropy over its base64 and hex alphabets."""

    def __init__(self) -> None:
        from detect_secrets.plugins.high_entropy_strings import (
            Base64HighEntropyString,
            HexHighEntropyString,
        )

        self.base64 = Base64HighEntropyString()
        self.hex = HexHighEntropyString()

    def random_looking(self, value: str, alone: bool) -> bool:
        has = (any(c.isdigit() for c in value), any(c.isalpha() for c in value))
        if not all(has):
            return False
        if set(value) <= _HEX:
            # A commit hash or UUID in a bug report: only after a cue ("key is ...").
            return not alone and self.hex.calculate_shannon_entropy(value) >= 3.0
        if alone and not (any(c.isupper() for c in value) and any(c.islower() for c in value)):
            return False  # tracking codes, SKUs: one case only
        limit = self.base64.entropy_limit if alone else 3.0
        return bool(self.base64.calculate_shannon_entropy(value) >= limit)


def _whole_token(text: str, start: int, end: int) -> tuple[int, int]:
    head = _TOKEN_HEAD.search(text, 0, start)
    tail = _TOKEN_TAIL.match(text, end)
    return (head.start() if head else start), (tail.end() if tail else end)


def _end_of(regex: re.Pattern[str], text: str, pos: int) -> int:
    """Where `regex`, which may match nothing, stops matching from `pos`."""
    match = regex.match(text, pos)
    return match.end() if match else pos


def _trim(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1] in _TRAILING:
        end -= 1
    return end


def _password_value(match: re.Match[str]) -> tuple[int, int] | None:
    start, end = match.span("value")
    end = _trim(match.string, start, end)
    value = match.string[start:end]
    if len(value) < 4 or _PLACEHOLDER.match(value):
        return None
    explicit = match.group("sep") in (":", "=")
    quoted = start > 0 and match.string[start - 1] in "\"'"
    if explicit or quoted or _HAS_DIGIT_OR_SYMBOL.search(value):
        return start, end
    return None


def recognizers() -> list[EntityRecognizer]:
    from detect_secrets.plugins.jwt import JwtTokenDetector
    from presidio_analyzer import EntityRecognizer, RecognizerResult
    from presidio_analyzer.nlp_engine import NlpArtifacts

    formats = _detect_secrets_formats()
    entropy = _Entropy()

    def format_spans(text: str) -> Iterator[tuple[int, int, float]]:
        for regex, kind in formats:
            for match in regex.finditer(text):
                start, end = _whole_token(text, *match.span())
                if kind == "jwt":
                    end = _trim(text, start, _end_of(_JWT_REST, text, end))
                    if not JwtTokenDetector.is_formally_valid(text[start:end]):
                        continue
                elif kind == "key-block":
                    end = _end_of(_KEY_BLOCK_REST, text, match.end())
                elif kind == "url":
                    head = _URL_HEAD.search(text, 0, match.start())
                    start = head.start() if head else match.start()
                    end = _trim(text, start, _end_of(_URL_REST, text, match.end()))
                    yield start, end, BASIC_AUTH_SCORE
                    continue
                yield start, end, FORMAT_SCORE

    def spans(text: str) -> Iterator[tuple[int, int, float]]:
        long_token = _has_long_token(text)
        if long_token or "BEGIN" in text or "PuTTY" in text or "://" in text:
            yield from format_spans(text)
        if long_token:
            for match in _CUED_TOKEN.finditer(text):
                start, end = match.span(1)
                end = _trim(text, start, end)
                if entropy.random_looking(text[start:end], alone=False):
                    yield start, end, CUE_SCORE
            for match in _LONE_TOKEN.finditer(text):
                if entropy.random_looking(match.group(), alone=True):
                    yield match.start(), match.end(), ENTROPY_SCORE
        lowered = text.lower()
        if any(cue in lowered for cue in _PASSWORD_CUES):
            for match in _PASSWORD.finditer(text):
                span = _password_value(match)
                if span is not None:
                    yield span[0], span[1], CUE_SCORE
        if "pin" in lowered:
            for match in _PIN.finditer(text):
                code = (match.group("code") or "").strip().lower()
                if not (code == "code" and len(match.group("value")) == 6):
                    yield match.start("value"), match.end("value"), CUE_SCORE

    class SecretRecognizer(EntityRecognizer):
        """`SECRET`: see the module's docstring."""

        def load(self) -> None:
            pass

        def analyze(
            self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
        ) -> list[RecognizerResult]:
            if SECRET not in entities:
                return []
            best: dict[tuple[int, int], float] = {}
            for start, end, score in spans(text):
                if end > start:
                    best[(start, end)] = max(score, best.get((start, end), 0.0))
            results = [RecognizerResult(SECRET, s, e, score) for (s, e), score in best.items()]
            return EntityRecognizer.remove_duplicates(results)

    recognizer: EntityRecognizer = SecretRecognizer(
        supported_entities=[SECRET], name="SecretRecognizer", supported_language="en"
    )
    return [recognizer]
