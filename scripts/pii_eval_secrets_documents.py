"""Issue 19's part of the PII evaluation set: secrets and identity documents.

Used by `make_pii_eval.py` (its block `# issue 19: secrets and documents`). Every
secret is made up and obviously fake: assembled at generation time from pieces,
with an `EXAMPLE` marker where the format allows it, random with the script's
fixed seed, so that no value in the repository is a live key, yet each has its
provider's format. Passports, licences and NINOs have valid shapes only.
"""

from __future__ import annotations

import base64
import json
import string
from typing import Any

SECRET = "SECRET"  # noqa: S105  (an entity name)
DATE_OF_BIRTH = "DATE_OF_BIRTH"
PASSPORT = "PASSPORT_NUMBER"
LICENCE = "DRIVER_LICENSE"
NINO = "UK_NINO"
ENTITY_TYPES = (SECRET, DATE_OF_BIRTH, PASSPORT, LICENCE, NINO)

_ALNUM = string.ascii_letters + string.digits
_URLSAFE = _ALNUM + "-_"
_MARK = "EXAMPLE"


def _pick(b: Any, chars: str, n: int) -> str:
    return "".join(b.rng.choice(chars) for _ in range(n))


def _provider_key(b: Any) -> str:
    up = string.ascii_uppercase + string.digits
    style = b.rotate("secret-key", 11)
    pieces = [
        lambda: "AKIA" + _MARK + _pick(b, up, 9),  # AWS access key id
        lambda: "gh" + "p_" + _MARK + _pick(b, _ALNUM, 29),  # GitHub
        lambda: "gl" + "pat-" + _MARK + _pick(b, _ALNUM, 13),  # GitLab
        lambda: (
            "xo"
            + f"xb-{b.digits(11)}-{b.digits(13)}-{_MARK.lower()}"
            + _pick(b, string.ascii_lowercase + string.digits, 17)
        ),  # Slack
        lambda: "sk" + "_test_" + _MARK + _pick(b, _ALNUM, 17),  # Stripe
        lambda: "rk" + "_test_" + _MARK + _pick(b, _ALNUM, 20),  # Stripe, restricted
        lambda: "sk-" + "proj-" + _MARK + _pick(b, _URLSAFE, 40),  # OpenAI project key
        lambda: "AI" + "za" + _MARK + _pick(b, _URLSAFE, 28),  # Google API key
        lambda: "SG." + _MARK + _pick(b, _URLSAFE, 15) + "." + _pick(b, _URLSAFE, 43),  # SendGrid
        lambda: "SK" + "example" + _pick(b, "0123456789abcdef", 25),  # Twilio API key
        lambda: "hf" + "_" + _MARK + _pick(b, _ALNUM, 27),  # Hugging Face
    ]
    return pieces[style]()


def _cued_key(b: Any) -> str:
    """A key of no known format: random letters and digits, as a provider's console shows."""
    return _pick(b, string.ascii_uppercase, 4) + _pick(b, _ALNUM, 28) + b.digits(2)


def _private_key(b: Any) -> str:
    kind = ["RSA ", "OPENSSH ", "EC ", ""][b.rotate("private-key", 4)]
    body = "\n".join(_MARK + _pick(b, _ALNUM + "+/", 41) for _ in range(2))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


def _b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _jwt(b: Any) -> str:
    header = _b64url({"alg": "HS256", "typ": "JWT"})
    payload = _b64url({"sub": f"{_MARK}-{b.digits(6)}", "iat": 1700000000 + int(b.digits(6))})
    return f"{header}.{payload}.{_pick(b, _URLSAFE, 43)}"


def _password(b: Any) -> str:
    word = b.rng.choice(["Maple", "tr0ub4dor", "Sunflower", "blue-otter", "Kestrel", "pa55"])
    return word + b.rng.choice(["!", "#", "&", "$", "_", ""]) + b.digits(b.rng.randint(2, 4))


def _basic_auth_url(b: Any) -> str:
    user = b.rng.choice(["admin", "deploy", "app", "report"])
    host = b.rng.choice(["db.example.com", "ftp.example.org", "git.example.net"])
    scheme = b.rng.choice(["https", "postgres", "ftp"])
    return f"{scheme}://{user}:{_password(b)}@{host}/{_pick(b, string.ascii_lowercase, 5)}"


def _dob(b: Any) -> str:
    day, month, year = b.rng.randint(1, 28), b.rng.randint(1, 12), b.rng.randint(1940, 2006)
    months = ["January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December"]  # fmt: skip
    style = b.rotate("dob", 6)
    if style == 0:
        return f"{day:02d}/{month:02d}/{year}"
    if style == 1:
        return f"{year}-{month:02d}-{day:02d}"
    if style == 2:
        return f"{day} {months[month - 1]} {year}"
    if style == 3:
        return f"{months[month - 1]} {day}, {year}"
    if style == 4:
        day_text = f"{day}th of" if day > 3 else str(day)
        return f"{day_text} {months[month - 1]} {year}"
    return f"{day:02d}.{month:02d}.{year}"


def _passport(b: Any) -> str:
    style = b.rotate("passport", 4)
    if style == 0:
        return b.rng.choice("56789") + b.digits(8)  # US, UK (older)
    if style == 1:
        return b.rng.choice("ACEFGH") + b.digits(8)  # US next generation
    if style == 2:
        return _pick(b, "ABCDEFGHJKLMNPRSTUWXYZ", 2) + b.digits(7)  # UK (2015 on)
    return b.rng.choice("CFGHJK") + _pick(b, "0123456789CFGHJKLMNPRTVWXYZ", 3) + b.digits(5)


def _licence(b: Any) -> str:
    style = b.rotate("licence", 5)
    if style == 0:  # UK: surname, decade, month (+50 for women), day, year, initials, digit, check
        surname = b.rng.choice(["MORGA", "WALSH", "HAYES", "PARKE", "FOX99", "DOYLE"])
        month = b.rng.randint(1, 12) + b.rng.choice([0, 50])
        born = f"{b.rng.randint(5, 9)}{month:02d}{b.rng.randint(1, 28):02d}{b.digits(1)}"
        initials = _pick(b, string.ascii_uppercase, 1) + b.rng.choice(["9", "J", "M"])
        return f"{surname}{born}{initials}{b.digits(1)}{_pick(b, string.ascii_uppercase, 2)}"
    if style == 1:
        return b.rng.choice("ABDFGY") + b.digits(7)  # California
    if style == 2:
        parts = (b.digits(3), b.digits(3), b.digits(2), b.digits(3), b.digits(1))
        return b.rng.choice("FST") + "-".join(parts)  # Florida
    if style == 3:
        return f"{b.digits(3)} {b.digits(3)} {b.digits(3)}"  # New York
    return f"{b.rng.choice('ABDS')}{b.digits(3)}-{b.digits(4)}-{b.digits(4)}"  # Illinois


def _nino(b: Any) -> str:
    first = b.rng.choice("ABCEHJKLMPRSTWXY")
    second = b.rng.choice("ABCEHJLMPRSWXY")
    digits, suffix = b.digits(6), b.rng.choice("ABCD")
    if b.rotate("nino", 3) == 0:
        return f"{first}{second} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"
    return f"{first}{second}{digits}{suffix}"


def _as(kind: str, make: Any) -> Any:
    return lambda b, who: (make(b), kind)


KEY_TEMPLATES = [
    "I accidentally pasted our key {key} into the public chat, can you rotate it?",
    "The integration fails with {key}, is that the right format?",
    "here's the token: {key}",
    "Our developer left {key} in the support ticket, please delete it.",
    "Using {key} in the config but the sync still says unauthorized.",
    "key={key} doesn't work since yesterday",
]
CUED_KEY_TEMPLATES = [
    "My API key is {cued} and the webhook still returns 401.",
    "Authorization: Bearer {cued}",
    "the secret key {cued} was shown in the error page",
]
BLOCK_TEMPLATES = [
    "Is this the right file? {block}",
    "The installer asked for the key, I gave it {block} and it failed.",
]
JWT_TEMPLATES = [
    "My session token {jwt} expires after 5 minutes, why?",
    "The app logs show {jwt} before the crash.",
]
PASSWORD_TEMPLATES = [
    "my password is {pw} and it still says invalid",
    "Password: {pw}",
    "pwd: {pw} (please don't store it)",
    "I changed my password to {pw} yesterday and now I'm locked out.",
    "The passcode {pw} doesn't open the locker.",
    "login jane.porter, password {pw}, still failing",
]
URL_TEMPLATES = [
    "The export connects to {url} but times out.",
    "Can you check {url}? The backup job stopped.",
]
PIN_TEMPLATES = [
    "My PIN is {pin}, why is the card declined?",
    "PIN: {pin}. The card still gets rejected at the till.",
]
DOB_TEMPLATES = [
    "My date of birth is {dob}, the form says I'm under 18.",
    "DOB: {dob}",
    "I was born on {dob}, can you fix the age on my account?",
    "{dob} is my date of birth, not the one on file.",
    "For the ID check, birth date {dob}.",
]
PASSPORT_TEMPLATES = [
    "My passport number is {pp}, do you need the expiry date too?",
    "Passport no. {pp} was used for the identity check.",
    "I uploaded the photo page, passport {pp}, but it says pending.",
    "Travel document {pp} expires next month.",
]
LICENCE_TEMPLATES = [
    "My driving licence number is {dl}.",
    "Driver's license {dl}, for the car hire booking.",
    "DL# {dl} was rejected by the verification step.",
    "The licence on file, {dl}, is out of date.",
]
NINO_TEMPLATES = [
    "My National Insurance number is {nino}.",
    "NI number {nino} for the payroll form.",
    "The employee's NINO: {nino}",
    "Please update my record, {nino} is the right one.",
]
NEGATIVE_TEMPLATES = {
    "negative-secret-lookalike": [
        "Where is my order {order}? The courier hasn't moved since {date}.",
        "The password reset link didn't arrive, can you resend it?",
        "My password is not working after the update to {ver}.",
        "Crash after commit 3f2c9a1b7e4d5c6a8b9f0e1d2c3b4a5968778695 in build {ver}.",
        "The bug shows up since 9c41e07, reverting to a1b2c3d fixes it.",
        "Coupon SUMMER2025OFF doesn't apply to {sku}.",
        "Request id 123e4567-e89b-12d3-a456-426614174000 failed with a 500.",
        "The password must be at least 12 characters long?",
        "Is chip and PIN required for contactless payments over {price}?",
        "The API key field is empty in the settings page, where do I get one?",
        "Please reset the token for the bank feed, it expired on {date}.",
        "Invoice {inv} and the licence key field are both blank.",
        "The product code BEAN-ETH-500G-WHOLE-ROAST-2025 is missing a photo.",
        "Is my PIN code 560001 covered by same-day delivery?",
        "Tracking 1ZEXAMPLE0123456789 and order {order} are mixed up.",
    ],
    "negative-document-lookalike": [
        "My subscription renewed on {date} but I cancelled before that.",
        "Can I order a birthday cake for 14 June?",
        "I was born here. The order {order} from {date} is still late.",
        "Do you need a passport photo or is a driving licence scan enough?",
        "The software license key {long} doesn't activate.",
        "Ticket TR123456A was closed without a reply.",
        "Order #A12345678 and parcel {trk} are both missing.",
        "The passport office is closed on {date}, can I still book?",
        "Version {ver} released on {date} broke the export.",
        "Our TV licence renewal came with invoice {inv}.",
        "The newborn baby wipes were out of stock on {date}.",
        "Delivery date {date}, order {order}, sku {sku}.",
        "What's the birthday discount? It was my birthday last week.",
        "We need {qty} for the staff party on {date}.",
        "The licence agreement for {model} expires on {date}.",
    ],
}


def add_to(b: Any) -> None:
    """Add the secrets and documents categories, positives then look-alike negatives."""
    secret = {
        "key": _as(SECRET, _provider_key),
        "cued": _as(SECRET, _cued_key),
        "block": _as(SECRET, _private_key),
        "jwt": _as(SECRET, _jwt),
        "pw": _as(SECRET, _password),
        "url": _as(SECRET, _basic_auth_url),
        "pin": _as(SECRET, lambda b: b.digits(b.rng.choice([4, 4, 6]))),
    }
    b.add("secret-provider-key", KEY_TEMPLATES, 18, secret)
    b.add("secret-cued-key", CUED_KEY_TEMPLATES, 3, secret)
    b.add("secret-private-key", BLOCK_TEMPLATES, 4, secret)
    b.add("secret-jwt", JWT_TEMPLATES, 4, secret)
    b.add("secret-password", PASSWORD_TEMPLATES, 12, secret)
    b.add("secret-basic-auth-url", URL_TEMPLATES, 4, secret)
    b.add("secret-pin", PIN_TEMPLATES, 3, secret)
    b.add("date-of-birth", DOB_TEMPLATES, 10, {"dob": _as(DATE_OF_BIRTH, _dob)})
    b.add("passport", PASSPORT_TEMPLATES, 8, {"pp": _as(PASSPORT, _passport)})
    b.add("driver-license", LICENCE_TEMPLATES, 10, {"dl": _as(LICENCE, _licence)})
    b.add("uk-nino", NINO_TEMPLATES, 8, {"nino": _as(NINO, _nino)})
    for category, templates in NEGATIVE_TEMPLATES.items():
        b.add(category, templates)
