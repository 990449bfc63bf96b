"""Generate the labelled PII evaluation set for the guardrail.

Writes ``guardrails/data/pii_eval.jsonl``: short customer-support messages and chat turns
(a coffee shop, an accounting-software help desk, an online shop, a bank, a telecom), one
JSON object per line::

    {"id": "...", "category": "...", "text": "...", "spans": [{"start", "end", "type"}]}

``text[start:end]`` is exactly the PII value and ``type`` is a Presidio entity name. Lines
whose category starts with ``negative-`` carry no spans: order numbers, dates, prices,
product codes and the like that a guardrail must leave untouched.

Every text is assembled from template pieces, so offsets are computed while the text is
built, never by searching it afterwards. A fixed seed makes the output byte-identical from
run to run. All data is made up: reserved e-mail domains, fictional phone ranges where a
country has them, random card numbers with a correct Luhn digit, IBANs with correct check
digits, random SSNs in the valid ranges, documentation IP ranges.

Run it from anywhere (the output path is found from this file)::

    python scripts/make_pii_eval.py
"""

from __future__ import annotations

import json
import random
import string
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pii_eval_addresses as issue19_addresses  # issue 19: addresses, beside this script
import pii_eval_secrets_documents as issue19  # issue 19: beside this script

ROOT = Path(__file__).resolve().parents[1]
OUT_PATH = ROOT / "guardrails" / "data" / "pii_eval.jsonl"
SEED = 2026

PERSON = "PERSON"
EMAIL = "EMAIL_ADDRESS"
PHONE = "PHONE_NUMBER"
CARD = "CREDIT_CARD"
IBAN = "IBAN_CODE"
SSN = "US_SSN"
IP = "IP_ADDRESS"
LOCATION = "LOCATION"
ENTITY_TYPES = (PERSON, EMAIL, PHONE, CARD, IBAN, SSN, IP, LOCATION)
ENTITY_TYPES += issue19.ENTITY_TYPES  # issue 19: secrets and documents
ENTITY_TYPES += issue19_addresses.ENTITY_TYPES  # issue 19: addresses

FULLWIDTH_AT = "\uff20"
ZERO_WIDTH_SPACE = "\u200b"
# ASCII digits and "+" to their fullwidth forms (U+FF10.., U+FF0B).
FULLWIDTH = str.maketrans({**{str(d): chr(0xFF10 + d) for d in range(10)}, "+": "\uff0b"})

# A piece of text: plain (unlabelled) or a (value, entity type) pair.
Piece = str | tuple[str, str]
Pieces = Piece | list[Piece]


@dataclass(frozen=True)
class Identity:
    full: str
    given: str
    family: str


@dataclass
class Example:
    category: str
    text: str
    spans: list[tuple[int, int, str]]
    values: list[str]
    id: str = ""


# --- names -------------------------------------------------------------------------------

ENGLISH_GIVEN = [
    "Olivia", "Liam", "Emma", "Noah", "Ava", "James", "Sophia", "Lucas", "Mia", "Ethan",
    "Charlotte", "Daniel", "Grace", "Henry", "Chloe", "Samuel", "Ella", "Jack", "Hannah",
    "Ryan", "Megan", "Thomas", "Laura", "Michael", "Rachel", "David", "Emily", "Matthew",
    "Jessica", "Andrew", "Sarah", "Kevin", "Natalie", "Brian", "Amy", "Jane",
]  # fmt: skip
ENGLISH_FAMILY = [
    "Bennett", "Carter", "Hughes", "Porter", "Reynolds", "Fletcher", "Walsh", "Morgan",
    "Sullivan", "Parker", "Hayes", "Brooks", "Foster", "Coleman", "Barnes", "Ward", "Jenkins",
    "Russell", "Griffin", "Palmer", "Holloway", "Thornton", "Whitaker", "Mitchell",
    "Harrington", "Doyle", "Lawson", "Pierce", "Dawson", "Mercer",
]  # fmt: skip
# (name as written, given name, family name)
INTL_NAMES = [
    ("José García", "José", "García"),
    ("Zoë Müller", "Zoë", "Müller"),
    ("Nguyễn Văn An", "An", "Nguyễn"),
    ("Olusegun Adeyemi", "Olusegun", "Adeyemi"),
    ("Siobhán O'Brien", "Siobhán", "O'Brien"),
    ("Wojciech Szczęsny", "Wojciech", "Szczęsny"),
    ("Priya Raghunathan", "Priya", "Raghunathan"),
    ("Björn Ekström", "Björn", "Ekström"),
    ("Ayşe Y\u0131lmaz", "Ayşe", "Y\u0131lmaz"),  # dotless i
    ("François Lefèvre", "François", "Lefèvre"),
    ("Mei-Ling Chen", "Mei-Ling", "Chen"),
    ("Hiroshi Tanaka", "Hiroshi", "Tanaka"),
    ("Fatima Al-Sayed", "Fatima", "Al-Sayed"),
    ("Kwame Mensah", "Kwame", "Mensah"),
    ("Ingrid Halvorsen", "Ingrid", "Halvorsen"),
    ("Łukasz Wróbel", "Łukasz", "Wróbel"),
    ("Chiara Bianchi", "Chiara", "Bianchi"),
    ("Park Sung-min", "Sung-min", "Park"),
    ("Anaïs Dubois", "Anaïs", "Dubois"),
    ("Joaquín Herrera", "Joaquín", "Herrera"),
    ("Dimitrios Papadopoulos", "Dimitrios", "Papadopoulos"),
    ("Eilidh MacLeod", "Eilidh", "MacLeod"),
    ("Aarav Sharma", "Aarav", "Sharma"),
    ("Thandiwe Ndlovu", "Thandiwe", "Ndlovu"),
    ("Jürgen Schäfer", "Jürgen", "Schäfer"),
    ("Tomás Ó Súilleabháin", "Tomás", "Ó Súilleabháin"),
    ("Renée Gagnon", "Renée", "Gagnon"),
    ("Oluwaseun Bakare", "Oluwaseun", "Bakare"),
    ("Ana Lúcia Ferreira", "Ana Lúcia", "Ferreira"),
    ("Wojciech Brzęczyszczykiewicz", "Wojciech", "Brzęczyszczykiewicz"),
]

# (city, country) pairs for LOCATION; the city alone or both are labelled.
PLACES = [
    ("Leeds", "England"), ("Lyon", "France"), ("Porto", "Portugal"), ("Kraków", "Poland"),
    ("Toronto", "Canada"), ("Melbourne", "Australia"), ("Osaka", "Japan"),
    ("São Paulo", "Brazil"), ("Cork", "Ireland"), ("Zürich", "Switzerland"),
    ("Malmö", "Sweden"), ("Pune", "India"), ("Nairobi", "Kenya"), ("Valencia", "Spain"),
    ("Ghent", "Belgium"), ("Düsseldorf", "Germany"), ("Montréal", "Canada"),
    ("Austin", "Texas"), ("Glasgow", "Scotland"), ("Reykjavík", "Iceland"),
    ("Auckland", "New Zealand"), ("Manchester", "England"), ("Bologna", "Italy"),
    ("Denver", "Colorado"),
]  # fmt: skip

_SLUG_MAP = str.maketrans({"\u0131": "i", "ł": "l", "Ł": "L", "ø": "o", "đ": "d", "ß": "ss"})


def slug(name: str) -> str:
    """ASCII, lower-case letters only: 'Ó Súilleabháin' -> 'osuilleabhain'."""
    decomposed = unicodedata.normalize("NFKD", name.translate(_SLUG_MAP))
    return "".join(c for c in decomposed.lower() if c in string.ascii_lowercase)


# --- checksums ---------------------------------------------------------------------------


def luhn_digit(partial: str) -> str:
    """The Luhn check digit to append to `partial`."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str(-total % 10)


def luhn_valid(number: str) -> bool:
    return luhn_digit(number[:-1]) == number[-1]


def iban_numeric(text: str) -> int:
    return int("".join(str(int(c, 36)) for c in text))


def iban_check_digits(country: str, bban: str) -> str:
    return f"{98 - iban_numeric(bban + country + '00') % 97:02d}"


def iban_valid(iban: str) -> bool:
    compact = iban.replace(" ", "")
    return iban_numeric(compact[4:] + compact[:4]) % 97 == 1


def spanish_control(digits: str) -> str:
    weights = (1, 2, 4, 8, 5, 10, 9, 7, 3, 6)
    d = 11 - sum(int(c) * w for c, w in zip(digits.zfill(10), weights, strict=True)) % 11
    return str({11: 0, 10: 1}.get(d, d))


# --- the builder -------------------------------------------------------------------------

Factory = Callable[["Builder", Identity], Pieces]
_FORMATTER = string.Formatter()


@dataclass
class Builder:
    rng: random.Random
    examples: list[Example] = field(default_factory=list)
    _turns: Counter[str] = field(default_factory=Counter)
    _seen: set[str] = field(default_factory=set)

    def digits(self, n: int) -> str:
        return "".join(self.rng.choice(string.digits) for _ in range(n))

    def rotate(self, key: str, n: int) -> int:
        """0, 1, ..., n-1, 0, ... per key, so every style of a format shows up."""
        turn = self._turns[key]
        self._turns[key] += 1
        return turn % n

    def identity(self, intl_share: float) -> Identity:
        if self.rng.random() < intl_share:
            full, given, family = INTL_NAMES[self.rotate("intl-name", len(INTL_NAMES))]
            return Identity(full, given, family)
        given = self.rng.choice(ENGLISH_GIVEN)
        family = self.rng.choice(ENGLISH_FAMILY)
        return Identity(f"{given} {family}", given, family)

    def render(
        self, template: str, factories: dict[str, Factory], intl_share: float
    ) -> tuple[str, list[tuple[int, int, str]], list[str]]:
        main = self.identity(intl_share)
        others: dict[str, Identity] = {}
        parts: list[str] = []
        spans: list[tuple[int, int, str]] = []
        values: list[str] = []
        pos = 0
        for literal, slot, spec, conversion in _FORMATTER.parse(template):
            parts.append(literal)
            pos += len(literal)
            if slot is None:
                continue
            assert not spec and not conversion, template
            base = slot.rstrip(string.digits)
            who = main
            if base != slot:
                if slot not in others:
                    others[slot] = self.identity(intl_share)
                who = others[slot]
            produced = factories.get(base, FACTORIES.get(base))
            assert produced is not None, f"no factory for {{{slot}}} in {template!r}"
            pieces = produced(self, who)
            for piece in pieces if isinstance(pieces, list) else [pieces]:
                if isinstance(piece, str):
                    value = piece
                else:
                    value, entity = piece
                    spans.append((pos, pos + len(value), entity))
                    values.append(value)
                parts.append(value)
                pos += len(value)
        return "".join(parts), spans, values

    def add(
        self,
        category: str,
        templates: list[str],
        count: int | None = None,
        factories: dict[str, Factory] | None = None,
        intl_share: float = 0.0,
    ) -> None:
        for i in range(len(templates) if count is None else count):
            template = templates[i % len(templates)]
            for _ in range(50):
                text, spans, values = self.render(template, factories or {}, intl_share)
                if text not in self._seen:
                    break
            else:
                raise RuntimeError(f"cannot make a new text from {template!r}")
            self._seen.add(text)
            self.examples.append(Example(category, text, spans, values))


# --- PII factories -----------------------------------------------------------------------


def f_name(b: Builder, who: Identity) -> Pieces:
    return (who.full, PERSON)


def f_name_lower(b: Builder, who: Identity) -> Pieces:
    return (who.full.lower(), PERSON)


def f_name_upper(b: Builder, who: Identity) -> Pieces:
    return (who.full.upper(), PERSON)


def f_first(b: Builder, who: Identity) -> Pieces:
    return (who.given, PERSON)


def _local_part(b: Builder, who: Identity) -> str:
    g, f = slug(who.given), slug(who.family)
    style = b.rotate("local-part", 6)
    if style == 0:
        return f"{g}.{f}"
    if style == 1:
        return f"{g[0]}{f}"
    if style == 2:
        return f"{g}{f[0]}{b.rng.randint(1, 99)}"
    if style == 3:
        return f"{g}_{f}"
    if style == 4:
        return f"{f}.{g[0]}"
    return f"{g}.{f}{b.rng.randint(70, 99)}"


PLAIN_DOMAINS = [
    "example.com", "example.org", "example.net", "kettlecafe.example", "ledgerly.example",
    "harbourbank.example", "northwind.example",
]  # fmt: skip
SUB_DOMAINS = [
    "mail.example.com", "support.example.org", "eu.example.net", "accounts.example.com",
    "staff.kettlecafe.example", "billing.ledgerly.example",
]  # fmt: skip
PLUS_TAGS = ["orders", "receipts", "bank", "newsletter", "2025", "invoices", "shop"]


def f_email(b: Builder, who: Identity) -> Pieces:
    return (f"{_local_part(b, who)}@{b.rng.choice(PLAIN_DOMAINS)}", EMAIL)


def f_email_plus(b: Builder, who: Identity) -> Pieces:
    local = _local_part(b, who)
    style = b.rotate("email-plus", 3)
    if style == 0:
        return (f"{local}+{b.rng.choice(PLUS_TAGS)}@{b.rng.choice(PLAIN_DOMAINS)}", EMAIL)
    if style == 1:
        return (f"{local}@{b.rng.choice(SUB_DOMAINS)}", EMAIL)
    return (f"{local}+{b.rng.choice(PLUS_TAGS)}@{b.rng.choice(SUB_DOMAINS)}", EMAIL)


def f_email_fullwidth(b: Builder, who: Identity) -> Pieces:
    domain = b.rng.choice(PLAIN_DOMAINS + SUB_DOMAINS)
    return (f"{_local_part(b, who)}{FULLWIDTH_AT}{domain}", EMAIL)


def f_email_zero_width(b: Builder, who: Identity) -> Pieces:
    email = f"{_local_part(b, who)}@{b.rng.choice(PLAIN_DOMAINS)}"
    cut = b.rng.randint(1, len(email) - 1)
    return (email[:cut] + ZERO_WIDTH_SPACE + email[cut:], EMAIL)


def f_email_obfuscated(b: Builder, who: Identity) -> Pieces:
    g, f = slug(who.given), slug(who.family)
    tld = b.rng.choice(["com", "org", "net"])
    style = b.rotate("email-obfuscated", 7)
    if style == 0:
        return (f"{g} dot {f} at example dot {tld}", EMAIL)
    if style == 1:
        return (f"{g[0]}.{f} [at] example [dot] {tld}", EMAIL)
    if style == 2:
        return (f"{g[0]}.{f} (at) example (dot) {tld}", EMAIL)
    if style == 3:
        return (f"{g[0]}{f} AT example DOT {tld}", EMAIL)
    if style == 4:
        return (f"{g}.{f} at example dot {tld}", EMAIL)
    if style == 5:
        return (f"{g}_{f} {{at}} example {{dot}} {tld}", EMAIL)
    return (f"{g}.{f} @ example . {tld}", EMAIL)


US_AREAS = ["212", "312", "415", "617", "206", "512", "303", "646", "702", "919"]


def us_phone(b: Builder) -> str:
    area, line = b.rng.choice(US_AREAS), f"01{b.digits(2)}"
    style = b.rotate("phone-us", 6)
    return [
        f"({area}) 555-{line}",
        f"{area}-555-{line}",
        f"+1 {area} 555 {line}",
        f"{area}.555.{line}",
        f"+1 ({area}) 555-{line}",
        f"1-{area}-555-{line}",
    ][style]


def uk_phone(b: Builder) -> str:
    tail = f"0{b.digits(3)}"
    style = b.rotate("phone-uk", 6)
    return [
        f"+44 20 7946 {tail}",
        f"020 7946 {tail}",
        f"07700 900{b.digits(3)}",
        f"+44 7700 900{b.digits(3)}",
        f"0113 496 {tail}",
        f"(0161) 496 {tail}",
    ][style]


def intl_phone(b: Builder) -> str:
    country = b.rotate("phone-intl-country", 4)
    style = b.rotate(f"phone-intl-{country}", 2)
    if country == 0:  # Germany
        if style == 0:
            return f"+49 {b.rng.choice(['30', '89', '40'])} {b.rng.randint(2, 9)}{b.digits(5)}"
        return (
            f"0{b.rng.choice(['30', '89', '40'])} {b.rng.randint(2, 9)}{b.digits(3)} {b.digits(3)}"
        )
    if country == 1:  # France, ARCEP's ranges for fiction
        block = b.rng.choice(["1 99 00", "6 39 98", "4 65 71"])
        if style == 0:
            return f"+33 {block} {b.digits(2)} {b.digits(2)}"
        return f"0{block} {b.digits(2)} {b.digits(2)}"
    if country == 2:  # India
        if style == 0:
            return f"+91 9{b.digits(4)} {b.digits(5)}"
        return f"+91-9{b.digits(4)}-{b.digits(5)}"
    # Australia, ACMA's ranges for fiction
    if style == 0:
        return f"+61 2 5550 {b.digits(4)}"
    return f"0491 570 1{b.digits(2)}"


def any_phone(b: Builder) -> str:
    return [us_phone, uk_phone, intl_phone][b.rotate("phone-any", 3)](b)


def f_phone_us(b: Builder, who: Identity) -> Pieces:
    return (us_phone(b), PHONE)


def f_phone_uk(b: Builder, who: Identity) -> Pieces:
    return (uk_phone(b), PHONE)


def f_phone_intl(b: Builder, who: Identity) -> Pieces:
    return (intl_phone(b), PHONE)


def f_phone(b: Builder, who: Identity) -> Pieces:
    return (any_phone(b), PHONE)


def f_phone_separated(b: Builder, who: Identity) -> Pieces:
    style = b.rotate("phone-separated", 4)
    if style == 0:
        return (" ".join(f"{b.rng.choice(US_AREAS)}55501{b.digits(2)}"), PHONE)
    if style == 1:
        return ("-".join(f"02079460{b.digits(3)}"), PHONE)
    if style == 2:
        return (f"{b.rng.choice(US_AREAS)}55501{b.digits(2)}", PHONE)
    return (f"+44-20-7946-0{b.digits(3)}", PHONE)


def f_phone_fullwidth(b: Builder, who: Identity) -> Pieces:
    style = b.rotate("phone-fullwidth", 3)
    number = [us_phone, uk_phone, intl_phone][style](b)
    return (number.translate(FULLWIDTH), PHONE)


def card_number(b: Builder, brand: int) -> str:
    if brand == 0:  # Visa, 16 digits
        partial = "4" + b.digits(14)
    elif brand == 1:  # Mastercard, 16 digits
        prefix = str(b.rng.randint(51, 55)) if b.rng.random() < 0.7 else "2221"
        partial = prefix + b.digits(15 - len(prefix))
    else:  # American Express, 15 digits
        partial = b.rng.choice(["34", "37"]) + b.digits(12)
    return partial + luhn_digit(partial)


def format_card(number: str, sep: str) -> str:
    groups = (4, 6, 5) if len(number) == 15 else (4, 4, 4, 4)
    parts, pos = [], 0
    for size in groups:
        parts.append(number[pos : pos + size])
        pos += size
    return sep.join(parts)


def f_card(b: Builder, who: Identity) -> Pieces:
    turn = b.rotate("card", 9)
    return (format_card(card_number(b, turn % 3), [" ", "-", ""][turn // 3]), CARD)


def iban_code(b: Builder, country: int) -> str:
    if country == 0:
        cc, bban = "DE", b.digits(8) + b.digits(10)
    elif country == 1:
        bank = b.rng.choice(["NWBK", "BARC", "LOYD", "MIDL", "HBUK"])
        cc, bban = "GB", bank + b.digits(6) + b.digits(8)
    elif country == 2:
        bank, branch, account = b.digits(5), b.digits(5), b.digits(11)
        key = 97 - (89 * int(bank) + 15 * int(branch) + 3 * int(account)) % 97
        cc, bban = "FR", f"{bank}{branch}{account}{key:02d}"
    elif country == 3:
        while True:  # Dutch account numbers pass the old 11-test
            account = b.digits(10)
            if sum(int(c) * w for c, w in zip(account, range(10, 0, -1), strict=True)) % 11 == 0:
                break
        cc, bban = "NL", b.rng.choice(["ABNA", "INGB", "RABO", "TRIO", "SNSB"]) + account
    else:
        entity, office, account = b.digits(4), b.digits(4), b.digits(10)
        control = spanish_control(entity + office) + spanish_control(account)
        cc, bban = "ES", entity + office + control + account
    return cc + iban_check_digits(cc, bban) + bban


def f_iban(b: Builder, who: Identity) -> Pieces:
    turn = b.rotate("iban", 10)
    iban = iban_code(b, turn % 5)
    if turn // 5 == 0:
        iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return (iban, IBAN)


def f_ssn(b: Builder, who: Identity) -> Pieces:
    area = b.rng.randint(1, 899)
    while area == 666:
        area = b.rng.randint(1, 899)
    group, serial = b.rng.randint(1, 99), b.rng.randint(1, 9999)
    sep = ["-", "-", " "][b.rotate("ssn", 3)]
    return (f"{area:03d}{sep}{group:02d}{sep}{serial:04d}", SSN)


def f_ipv4(b: Builder, who: Identity) -> Pieces:
    style = b.rotate("ipv4", 5)
    if style < 3:
        prefix = ["192.0.2", "198.51.100", "203.0.113"][style]
        return (f"{prefix}.{b.rng.randint(1, 254)}", IP)
    if style == 3:
        return (f"10.{b.rng.randint(0, 255)}.{b.rng.randint(0, 255)}.{b.rng.randint(1, 254)}", IP)
    return (f"192.168.{b.rng.randint(0, 10)}.{b.rng.randint(2, 254)}", IP)


def f_ipv6(b: Builder, who: Identity) -> Pieces:
    def h() -> str:
        return f"{b.rng.randint(1, 0xFFFF):x}"

    style = b.rotate("ipv6", 3)
    if style == 0:
        return (f"2001:db8:{h()}:{h()}::{h()}", IP)
    if style == 1:
        return (f"2001:db8:{h()}:{h()}:{h()}:{h()}:{h()}:{h()}", IP)
    return (f"fe80::{h()}:{h()}:{h()}:{h()}", IP)


def f_ip(b: Builder, who: Identity) -> Pieces:
    return f_ipv6(b, who) if b.rotate("ip-any", 4) == 3 else f_ipv4(b, who)


def _place(b: Builder) -> tuple[str, str]:
    return PLACES[b.rotate("place", len(PLACES))]


def f_city(b: Builder, who: Identity) -> Pieces:
    return (_place(b)[0], LOCATION)


def f_country(b: Builder, who: Identity) -> Pieces:
    return (_place(b)[1], LOCATION)


def f_place(b: Builder, who: Identity) -> Pieces:
    city, country = _place(b)
    return [(city, LOCATION), ", ", (country, LOCATION)]


# --- non-PII fillers ---------------------------------------------------------------------


def f_order(b: Builder, who: Identity) -> Pieces:
    style = b.rotate("order", 3)
    if style == 0:
        return f"ORD-{b.rng.choice([2024, 2025])}-{b.digits(5)}"
    if style == 1:
        return f"#A{b.digits(7)}"
    return f"#{b.rng.randint(100000, 999999)}"


def f_inv(b: Builder, who: Identity) -> Pieces:
    if b.rotate("invoice", 2) == 0:
        return f"INV-{b.rng.choice([2024, 2025])}-{b.digits(5)}"
    return f"INV{b.digits(6)}"


def f_trk(b: Builder, who: Identity) -> Pieces:
    style = b.rotate("tracking", 3)
    if style == 0:
        alnum = "".join(b.rng.choice(string.ascii_uppercase + string.digits) for _ in range(6))
        return f"1Z{alnum}{b.digits(10)}"
    if style == 1:
        letters = "".join(b.rng.choice(string.ascii_uppercase) for _ in range(2))
        return f"{letters}{b.digits(9)}GB"
    return f"9400 1{b.digits(3)} {b.digits(4)} {b.digits(4)} {b.digits(4)} {b.digits(2)}"


MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]  # fmt: skip


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def f_date(b: Builder, who: Identity) -> Pieces:
    day, month = b.rng.randint(1, 28), b.rng.randint(1, 12)
    year = b.rng.choice([2024, 2025, 2026])
    style = b.rotate("date", 5)
    if style == 0:
        return f"{day:02d}/{month:02d}/{year}"
    if style == 1:
        return f"{year}-{month:02d}-{day:02d}"
    if style == 2:
        return f"{MONTHS[month - 1]} {_ordinal(day)}"
    if style == 3:
        return f"{day} {MONTHS[month - 1]} {year}"
    return f"{month}/{day}/{year % 100:02d}"


def f_ordinal(b: Builder, who: Identity) -> Pieces:
    return _ordinal(b.rng.randint(1, 28))


def f_time(b: Builder, who: Identity) -> Pieces:
    style = b.rotate("time", 3)
    if style == 0:
        return f"{b.rng.randint(6, 11)}:{b.rng.choice(['00', '15', '30', '45'])} am"
    if style == 1:
        return f"{b.rng.randint(12, 23)}:{b.rng.randint(0, 59):02d}"
    return f"{b.rng.randint(1, 10)}pm"


def f_price(b: Builder, who: Identity) -> Pieces:
    style = b.rotate("price", 5)
    if style == 0:
        return f"${b.rng.randint(1, 2999):,}.{b.rng.randint(0, 99):02d}"
    if style == 1:
        return f"€{b.rng.randint(2, 60)}"
    if style == 2:
        return f"£{b.rng.randint(1, 9)}.{b.rng.choice(['20', '40', '65', '95'])}"
    if style == 3:
        return f"{b.rng.randint(5, 300)}.{b.rng.randint(0, 99):02d} EUR"
    return f"${b.rng.randint(3, 9)}.{b.rng.randint(0, 99):02d}"


def f_sku(b: Builder, who: Identity) -> Pieces:
    if b.rotate("sku", 2) == 0:
        return f"SKU-{b.rng.randint(10, 99)}-{b.digits(4)}"
    origin = b.rng.choice(["ETH", "COL", "BRA", "GUA"])
    return f"BEAN-{origin}-{b.rng.choice([250, 500, 1000])}G"


def f_ver(b: Builder, who: Identity) -> Pieces:
    major, minor, patch = b.rng.randint(1, 9), b.rng.randint(0, 24), b.rng.randint(0, 12)
    if b.rotate("version", 2) == 0:
        return f"v{major}.{minor}.{patch}"
    return f"{major}.{minor}.{patch} (build {b.rng.randint(1000, 9999)})"


def f_qty(b: Builder, who: Identity) -> Pieces:
    style = b.rotate("qty", 4)
    if style == 0:
        return f"{b.rng.randint(2, 40) * 12} paper cups"
    if style == 1:
        return f"{b.rng.randint(2, 9)} x 1kg bags of espresso beans"
    if style == 2:
        return f"{b.rng.randint(2, 30)} boxes of till rolls"
    return f"{b.rng.randint(2, 24)} cartons of oat milk"


def f_pct(b: Builder, who: Identity) -> Pieces:
    if b.rotate("pct", 2) == 0:
        return f"{b.rng.randint(1, 40)}%"
    return f"{b.rng.randint(0, 9)}.{b.rng.randint(1, 9)}%"


def f_ticket(b: Builder, who: Identity) -> Pieces:
    style = b.rotate("ticket", 3)
    if style == 0:
        return f"TCK-{b.digits(6)}"
    if style == 1:
        return f"INC{b.digits(7)}"
    return f"case #{b.digits(8)}"


def f_last4(b: Builder, who: Identity) -> Pieces:
    return b.rng.choice(["4242", "1881", "0005", "7310", "9921", "3056", "6604"])


def f_long(b: Builder, who: Identity) -> Pieces:
    while True:
        number = str(b.rng.randint(1, 9)) + b.digits(b.rng.choice([13, 15, 17]))
        if not luhn_valid(number):
            return number


def f_amount(b: Builder, who: Identity) -> Pieces:
    return f"{b.rng.randint(10, 99)},{b.digits(3)},{b.digits(3)},{b.digits(3)}.{b.digits(2)}"


def f_model(b: Builder, who: Identity) -> Pieces:
    letters = "".join(b.rng.choice("BCEKRTVX") for _ in range(2))
    suffix = b.rng.choice(["", "S", "X", "Pro"])
    return f"{letters}-{b.rng.randint(100, 9900)}{suffix}"


def f_minutes(b: Builder, who: Identity) -> Pieces:
    return str(b.rng.randint(10, 50))


FACTORIES: dict[str, Factory] = {
    "name": f_name,
    "first": f_first,
    "email": f_email,
    "phone": f_phone,
    "card": f_card,
    "iban": f_iban,
    "ssn": f_ssn,
    "ip": f_ip,
    "city": f_city,
    "country": f_country,
    "place": f_place,
    "order": f_order,
    "inv": f_inv,
    "trk": f_trk,
    "date": f_date,
    "ord": f_ordinal,
    "time": f_time,
    "price": f_price,
    "sku": f_sku,
    "ver": f_ver,
    "qty": f_qty,
    "pct": f_pct,
    "ticket": f_ticket,
    "last": f_last4,
    "long": f_long,
    "amount": f_amount,
    "model": f_model,
    "minutes": f_minutes,
}

# --- templates ---------------------------------------------------------------------------

NAME_TEMPLATES = [
    "Hi, this is {name}. I placed a mobile order for two flat whites {minutes} minutes ago "
    "and it still says 'preparing'.",
    "My name is {name} and I can't log in to the invoicing dashboard since this morning's update.",
    "Could you please cancel order {order}? It was placed under {name}.",
    "I'd like to report a lost debit card. The account holder is {name}.",
    "The parcel was left with a neighbour instead of me, {name}, and now it's missing.",
    "{name} here. My broadband has dropped out three times today.",
    "Please add {name} as a second user on our accounting subscription.",
    "Your barista {name} went above and beyond today, please pass on my thanks!",
    "Hello, I'm writing on behalf of my grandparent, {name}, who can't access their online "
    "banking.",
    "The invoice is addressed to {name}, but it should go to our finance team instead.",
    "Can you move the phone contract over to {name}? They are taking over the bill.",
    "Thanks for sorting out the refund so quickly. Kind regards, {name}",
    "I spoke to {name} in your returns team last week and was promised a replacement.",
    "Booking for tomorrow at {time}, the name is {name}.",
]
FIRST_TEMPLATES = [
    "Thanks {first}, that fixed the sync issue!",
    "Hi, it's {first} again. The refund still hasn't shown up.",
    "{first} at the till was really patient with my order, thank you.",
    "Can I speak to {first} again? They were handling my complaint yesterday.",
    "Hey, {first} here. Is the shop open on bank holidays?",
    "Please tell {first} the new router arrived and works fine.",
    "I spoke with {first} on the phone and was promised a callback before {time}.",
    "Just me, {first}. I forgot my online banking password again.",
    "Cheers {first}, the bank feed is importing again.",
    "Order for {first}: one oat latte and a blueberry muffin.",
]
LOWER_TEMPLATES = [
    "my name is {name} and i need to change my delivery address",
    "hi its {name}, the app keeps logging me out",
    "account is under {name}, can u check why my bill went up",
    "this is {name} i ordered a latte and got a cappuccino lol",
    "pls send the invoice to {name} not me",
    "hey, {name} here. my card got declined twice today",
    "name on the booking is {name}, we are a table of four",
]
UPPER_TEMPLATES = [
    "THIS IS {name} AND I HAVE BEEN ON HOLD FOR AN HOUR.",
    "ACCOUNT HOLDER: {name}. PLEASE CLOSE THIS ACCOUNT.",
    "HELLO, MY NAME IS {name}, WHERE IS MY ORDER {order}?",
    "The delivery label says {name} but that's my flatmate, not me.",
    "Cardholder name on the form: {name}.",
]

EMAIL_TEMPLATES = [
    "You can reach me at {email} if you need anything else.",
    "Please send the receipt to {email}.",
    "My login email is {email} but the reset link never arrives.",
    "Can you update the billing contact to {email}?",
    "I never got the confirmation for order {order}; my email is {email}.",
    "Contact: {email}",
    "Please cc {email} on the next statement.",
    "The e-gift card was meant to go to {email}, not to me.",
    "Our bookkeeper uses {email} for the shared ledger.",
    "is {email} the right address for the loyalty card? i dont get any emails",
]
EMAIL_ODD_TEMPLATES = [
    "email me at {email}, the form won't accept it for some reason",
    "My address is {email}, can you resend the invoice there?",
    "Please register the loyalty card with {email}.",
    "I copied {email} from my profile but the login page says it's not found.",
    "Send the tracking link to {email} please.",
    "reply to {email} not to the no-reply address",
    "The bank statement should go to {email} from now on.",
    "For the eSIM activation use {email}.",
]

PHONE_TEMPLATES = [
    "Please call me back on {phone}.",
    "My mobile number is {phone} if the courier needs to reach me.",
    "You can text {phone} when the order is ready for pickup.",
    "The number on my account is {phone}, but it's an old one.",
    "I'm porting {phone} to your network, how long will it take?",
    "best number to reach me is {phone}, any time after 5",
    "Our office line {phone} is ringing out, is there an outage?",
    "Update my contact number to {phone}, please.",
    "I got a suspicious call from {phone} claiming to be your fraud team.",
    "Call {phone} to confirm the catering order for Friday.",
    "Missed a call from your help desk, the number was {phone}. What was it about?",
]

CARD_TEMPLATES = [
    "I was charged twice on my card {card}, can you refund one of them?",
    "Please use {card} for the monthly subscription from now on.",
    "The checkout keeps rejecting {card} even though it has funds.",
    "My new card number is {card}, the old one expired.",
    "card no {card} exp 09/28, is that enough to pay the invoice?",
    "Can you check if {card} is blocked? It was declined at the coffee shop this morning.",
    "I need to dispute a transaction on {card} from {date}.",
    "Here's the card for the deposit: {card}",
    "Charge the {price} cancellation fee to {card}.",
    "The app saved {card} in plain text on the receipt screen, is that normal?",
]

IBAN_TEMPLATES = [
    "Please send the refund to my IBAN {iban}.",
    "Our supplier's bank details changed to {iban}, how do I update the payee?",
    "The direct debit should come from {iban}.",
    "I want to set up a standing order to {iban} every month.",
    "IBAN: {iban}, reference {inv}.",
    "The payroll export rejects {iban} as invalid, but the bank says it's correct.",
    "Can you confirm the transfer of {price} to {iban} went through?",
]

SSN_TEMPLATES = [
    "My SSN is {ssn}, do you need anything else for the credit check?",
    "The tax form asks for the employee's SSN; it's {ssn}.",
    "I typed {ssn} as my social security number but the form says it's wrong.",
    "Verification: surname matches, SSN {ssn}.",
    "Can you remove my social security number {ssn} from my profile? I don't want it stored.",
    "for the W-9 the ssn is {ssn}",
]

IP_TEMPLATES = [
    "I got a login alert from {ip}, that wasn't me.",
    "My router's public IP is {ip} and the VPN won't connect.",
    "Please allow {ip} for our office so the accounting app stops asking for 2FA.",
    "The speed test shows {ip} as my address, is that right?",
    "The till can't reach the server at {ip}.",
    "Blocked sign-in attempt from {ip} at 3am, should I be worried?",
]

LOCATION_TEMPLATES = [
    "I live in {city} and the courier keeps saying my address is out of range.",
    "Shipping to {place}, how long does that usually take?",
    "I'm currently in {country} on holiday and my card got declined at a cafe.",
    "We just moved from {city} to {city2}, do I need to update anything on my account?",
    "I'm based in {city}, is there a branch near me that opens on Sundays?",
    "Can you deliver to {city}? I'm staying there until the end of the month.",
    "My roaming isn't working; I'm in {place} right now.",
    "Our bakery is in {city}, so can the invoice show the local VAT rate?",
    "i live in {city} lol do u ship there",
    "I'm travelling to {country} next week, will my phone plan work there?",
]

MIXED_TEMPLATES = [
    "Hi, I'm {name} and my login email is {email}. I can't reset my password.",
    "Please call {name} on {phone} when the cake order is ready.",
    "Cardholder {name}, card {card}. Why was I charged {price} twice?",
    "Someone logged in from {ip} and changed the email on my account to {email}.",
    "This is {name} from {city}; please send the refund to {iban}.",
    "Name: {name}, SSN: {ssn}, phone: {phone}. Is that all you need for the loan?",
    "I'm {name}, I live in {city}, and you can reach me at {email} or {phone}.",
    "Please update my details: email {email}, mobile {phone}.",
    "My card {card} was used from {ip}, which isn't my network.",
    "Ship it to {name} in {place}; their number is {phone}.",
    "hi this is {name} my email is {email} and my ssn is {ssn}",
    "Refund to {iban} please, and send the receipt to {email}.",
    "{name} here. I'm in {country} this week and my card {card} keeps getting declined.",
    "Our accountant {name} ({email}) needs access from {ip}.",
]

NEGATIVE_TEMPLATES: dict[str, list[str]] = {
    "negative-order-number": [
        "Where is my order {order}? It was supposed to arrive yesterday.",
        "Order {order} arrived with a cracked mug.",
        "I'd like to return two items from order {order}.",
        "Can you combine orders {order} and {order2} into one shipment?",
        "My order {order} shows as delivered but nothing came.",
        "Reorder the same beans as {order}, please.",
        "Order ORD-2024-88317 and #A1234567 both got cancelled, why?",
    ],
    "negative-invoice": [
        "Invoice {inv} is showing as unpaid even though we paid it.",
        "Can you resend invoice {inv} as a PDF?",
        "The VAT on {inv} looks wrong.",
        "We need a credit note against {inv}.",
        "Why are {inv} and {inv2} both dated the same day?",
        "Invoice {inv} should total {price}, not {price2}.",
    ],
    "negative-tracking": [
        "Tracking number {trk} hasn't updated in four days.",
        "The courier's site says {trk} is 'held at depot', what does that mean?",
        "I got two tracking numbers, {trk} and {trk2}, is that right?",
        "Parcel {trk} was marked as returned to sender.",
        "Can you check {trk}? It's been stuck in customs.",
        "tracking {trk} says delivered but my porch is empty",
    ],
    "negative-date": [
        "My subscription renewed on {date} but I cancelled before that.",
        "Can I book the back room for {date}?",
        "The statement dated {date} is missing a payment.",
        "We're closing early on {date} for staff training.",
        "The last bank feed sync ran on {date}.",
        "The bill cycle runs from the {ord} to the {ord2} of each month.",
        "Delivery was promised for 12/03/2025 and then moved to March 3rd.",
    ],
    "negative-time": [
        "What time do you open on Sundays? Is {time} too early?",
        "My order was placed at {time} and it's now {time2}.",
        "The outage started at {time} and is still ongoing.",
        "Can the courier come after {time}?",
        "Happy hour is until {time}, right?",
        "The scheduled report didn't run at {time} yesterday.",
    ],
    "negative-price": [
        "Why was I charged {price} instead of {price2}?",
        "A large oat latte is {price} now? It used to be {price2}.",
        "The plan went up to {price} a month.",
        "Is there a refund for the {price} overdraft fee?",
        "The laptop was $1,249.99 yesterday and today it's more.",
        "Is the €15 voucher still valid?",
    ],
    "negative-sku": [
        "Is {sku} back in stock?",
        "I ordered {sku} but received {sku2}.",
        "Do you have {sku} in a bigger size?",
        "The product page for SKU-44-1021 shows the wrong photo.",
        "Can I swap {sku} for something similar?",
        "Your price list still shows {sku} at the old price.",
    ],
    "negative-version": [
        "Since updating to {ver} the bank reconciliation screen is blank.",
        "The app is on {ver}, is there a newer build?",
        "Firmware {ver} on the router keeps rebooting.",
        "Does version v2.14.3 fix the payroll export bug?",
        "The iOS app {ver} crashes when I scan a receipt.",
        "Rolling back from {ver} to {ver2} fixed it for me.",
    ],
    "negative-quantity": [
        "I need {qty} for the office, can you do a bulk discount?",
        "Can I add {qty} to my standing order?",
        "We only received {qty}, the rest of the delivery is missing.",
        "Is there a plan with 100 GB of data and 5 user seats?",
        "Please reduce the standing order to {qty} from next month.",
        "The quote was for {qty}, not {qty2}.",
    ],
    "negative-percentage": [
        "The interest rate jumped from {pct} to {pct2}.",
        "Is the {pct} staff discount applied automatically?",
        "My battery drops to {pct} in an hour on your network.",
        "The report says sales are up {pct} but that can't be right.",
        "Why is there a {pct} foreign transaction fee?",
        "Only {pct} of my data allowance is left already.",
    ],
    "negative-ticket": [
        "Any update on ticket {ticket}?",
        "I was told to quote {ticket} when I call.",
        "Reopening {ticket}, the issue came back.",
        "Please merge {ticket} with {ticket2}, it's the same problem.",
        "{ticket} was closed without a reply.",
        "Following up on {ticket} from last week.",
    ],
    "negative-card-last4": [
        "The charge on my card ending {last} went through twice.",
        "Please remove the Visa ending in {last} from my wallet.",
        "Is the card ending {last} still set as the default?",
        "The statement shows **** **** **** {last} but I don't recognise the payment.",
        "My Mastercard ending 4242 expired, how do I add the new one?",
        "Which card did you charge, the one ending in {last}?",
    ],
    "negative-short-number": [
        "I keep getting error 1111 when I open the app.",
        "Table 12 ordered twice by mistake.",
        "Is 2048 the maximum number of rows in an import?",
        "The voucher code is 7731, but it says expired.",
        "We need 40 sandwiches for Friday.",
        "Error 404 on the payment page again.",
        "The door code 1111 isn't working for the click-and-collect locker.",
    ],
    "negative-long-number": [
        "Payment reference {long} doesn't match anything on my statement.",
        "The barcode under the receipt reads {long}.",
        "Batch number {long} is on the recalled list?",
        "The invoice total came out as {amount} because of a decimal error.",
        "My balance shows {amount}, I wish that were real.",
        "The export has a row with transaction id {long}, what is it?",
    ],
    "negative-model-number": [
        "My {model} espresso machine leaks from the steam wand.",
        "Does the {model} router support WiFi 6?",
        "Is the {model} card reader compatible with the till app?",
        "The {model} grinder arrived without a hopper lid.",
        "Can I upgrade from the {model} to the {model2}?",
        "Do you still stock filters for the {model}?",
    ],
    "negative-role": [
        "The manager said I could get a refund, but the till says no.",
        "Our barista made the wrong drink again.",
        "Can I speak to your supervisor, please?",
        "My account manager hasn't replied to my email in a week.",
        "The delivery driver left the parcel in the rain.",
        "The cashier overcharged me this morning.",
        "Your support agent told me to reinstall the app, but that didn't help.",
        "Please ask the engineer to call before arriving.",
    ],
    "negative-brand": [
        "Does your app integrate with QuickBooks or Xero?",
        "Can I pay with Apple Pay or only with Visa?",
        "Do you do a Tim Hortons style double double?",
        "Is Ben & Jerry's still on offer in the freezer section?",
        "My iPhone 15 won't connect to your 5G network.",
        "Do you sell Dr. Martens in size 9?",
        "Do you accept American Express at the kiosk?",
        "Is the Samsung Galaxy S24 included in the upgrade offer?",
    ],
}


# --- issue 19: names ----------------------------------------------------------------------

# Names from five traditions spaCy's small English model knows little of, written as people
# type them. Some of their words are rare or absent in the gazetteer the recognizer ships
# (e.g. "Dubhghaill", "Hrytsenko", "Wickramasinghe", "Jae-won"), so recall on these is a
# check, not a tuning target.
NAMES19 = {
    "irish": [
        "Siobhán Ní Bhriain", "Aoife Ní Chonaill", "Tadhg Ó Ceallaigh", "Niamh Ó Súilleabháin",
        "Oisín Mac Cárthaigh", "Gráinne Nic Dhonnchadha", "Caoimhe Ní Mhurchú",
        "Ciarán Ó Dubhghaill", "Saoirse Uí Bhriain", "Ruairí Ó Floinn", "Eibhlín Ní Shé",
        "Pádraig Mac Suibhne",
    ],
    "slavic": [
        "Wojciech Przybylski", "Grzegorz Brzęczek", "Dmitry Vasilyev", "Svetlana Kuznetsova",
        "Miroslav Dvořák", "Zbigniew Wiśniewski", "Jelena Jovanović", "Bogdan Nikolić",
        "Katarzyna Zielińska", "Radosław Kowalczyk", "Yaroslava Hrytsenko", "Vuk Stanković",
    ],
    "arabic": [
        "Yusuf Al-Farsi", "Khalid bin Hamdan", "Layla Haddad", "Abdullah ibn Nasser",
        "Mariam al-Qahtani", "Omar El-Sayed", "Noura bint Saeed", "Tariq Abu Zaid",
        "Huda Al Mansouri", "Samir Khoury", "Rania Barakat", "Faisal Al-Otaibi",
    ],
    "south-asian": [
        "Venkatesh Subramanian", "Lakshmi Iyer", "Arjun Chatterjee", "Deepika Banerjee",
        "Ravi Krishnamurthy", "Ananya Raghavan", "Sandeep Kulkarni", "Meenakshi Sundaram",
        "Harpreet Kaur Sandhu", "Farhan Chowdhury", "Nirmala Wickramasinghe", "Rohan Deshpande",
    ],
    "east-asian": [
        "Zhang Xiaoming", "Liu Yang", "Takahashi Yuki", "Hiroshi Watanabe", "Choi Ji-woo",
        "Kim Seo-yeon", "Nguyen Thi Phuong", "Tran Van Hung", "Lim Wei Jie", "Tan Mei Ling",
        "Nakamura Haruto", "Park Jae-won",
    ],
}  # fmt: skip
NAME19_TEMPLATES = [
    "Please add {name} as a second user on our accounting subscription.",
    "The parcel was left with {name} next door and now it's missing.",
    "Your barista {name} went above and beyond today, please pass on my thanks!",
    "The invoice is addressed to {name}, but it should go to our finance team.",
    "Can you move the phone contract over to {name}? They are taking over the bill.",
    "I was helped by {name} in your returns team last week.",
    "Booking for tomorrow for {name}, a table of four.",
    "The refund went to {name} instead of to me.",
    "{name} will pick up the order on Friday.",
    "Our new bookkeeper {name} needs access to the ledger.",
]
NEGATIVE19_TEMPLATES = [
    "One Rose latte and a Java Mocha to take away, please.",
    "Do you have the Jordan sneakers in a size 10?",
    "Is the Earl Grey loose leaf or in bags?",
    "Can I pay with Apple Pay in the app?",
    "A Matcha latte with oat milk and a Masala chai, please.",
    "Is the Jasmine green tea caffeine free?",
    "The Darjeeling tea and the Sumatra Mandheling beans are out of stock.",
    "Are the Chelsea boots available in tan?",
    "Does the Dell Latitude come with a backlit keyboard?",
    "The Ford Fiesta in the advert is the hire car, right?",
    "Your Costa Coffee gift card doesn't work in the app.",
    "I bought a Tesla Model Y charger from your shop.",
    "We had the Kung Pao chicken and the Pad Thai.",
    "Two Krispy Kreme boxes for the office, please.",
    "Does the Nespresso Vertuo take the Lavazza pods?",
    "grant access to the shared folder for the whole team",
    "will rose gold cases be back in stock?",
    "The Harley Davidson jacket I ordered came in the wrong size.",
    "Is the Tim Tam multipack still on offer?",
    "Can I get a Flat White with a shot of Irish Cream syrup?",
]
# Places made of words that are also names: LOCATION, so a PERSON finding is a false positive.
PLACES19 = [
    "Paris", "Kuala Lumpur", "Abu Dhabi", "Ho Chi Minh City", "San Diego", "Santa Cruz",
    "Sao Paulo", "Hyderabad",
]  # fmt: skip
PLACE19_TEMPLATES = [
    "We are flying to {place19} on Friday.",
    "My order is going to {place19}, not to the office.",
    "Is the store in {place19} open on Sundays?",
    "Delivery to {place19} took three weeks.",
]


def f_place19(b: Builder, who: Identity) -> Pieces:
    return (PLACES19[b.rotate("place19", len(PLACES19))], LOCATION)


def f_name19(group: str) -> Factory:
    """The group's next name: as written (half of them), in lower case or in capitals."""

    def factory(b: Builder, who: Identity) -> Pieces:
        names = NAMES19[group]
        name = names[b.rotate(f"name19-{group}", len(names))]
        style = b.rotate("name19-case", 4)
        return (name.lower() if style == 2 else name.upper() if style == 3 else name, PERSON)

    return factory


def build(rng: random.Random) -> list[Example]:
    b = Builder(rng)
    b.add("person-full", NAME_TEMPLATES, 18)
    b.add("person-first", FIRST_TEMPLATES, 12)
    b.add("name-lowercase", LOWER_TEMPLATES, 10, {"name": f_name_lower}, intl_share=0.2)
    b.add("name-caps", UPPER_TEMPLATES, 8, {"name": f_name_upper}, intl_share=0.25)
    b.add("person-non-english", NAME_TEMPLATES + FIRST_TEMPLATES[:4], 26, intl_share=1.0)
    b.add("email", EMAIL_TEMPLATES, 20, intl_share=0.2)
    b.add("email-plus-subdomain", EMAIL_TEMPLATES, 14, {"email": f_email_plus})
    b.add("email-fullwidth", EMAIL_ODD_TEMPLATES, 6, {"email": f_email_fullwidth})
    b.add("email-zero-width", EMAIL_ODD_TEMPLATES, 6, {"email": f_email_zero_width})
    b.add("email-obfuscated", EMAIL_ODD_TEMPLATES, 16, {"email": f_email_obfuscated})
    b.add("phone-us", PHONE_TEMPLATES, 14, {"phone": f_phone_us})
    b.add("phone-uk", PHONE_TEMPLATES, 10, {"phone": f_phone_uk})
    b.add("phone-intl", PHONE_TEMPLATES, 20, {"phone": f_phone_intl})
    b.add("phone-separated", PHONE_TEMPLATES, 8, {"phone": f_phone_separated})
    b.add("phone-fullwidth", PHONE_TEMPLATES, 6, {"phone": f_phone_fullwidth})
    b.add("credit-card", CARD_TEMPLATES, 30)
    b.add("iban", IBAN_TEMPLATES, 25)
    b.add("ssn", SSN_TEMPLATES, 18)
    b.add("ip-v4", IP_TEMPLATES, 13, {"ip": f_ipv4})
    b.add("ip-v6", IP_TEMPLATES, 6, {"ip": f_ipv6})
    b.add("location", LOCATION_TEMPLATES, 30)
    b.add("mixed", MIXED_TEMPLATES, 42, intl_share=0.3)
    for category, templates in NEGATIVE_TEMPLATES.items():
        b.add(category, templates)
    # issue 19: names
    for group, names in NAMES19.items():
        b.add(f"person-{group}", NAME19_TEMPLATES, len(names), {"name": f_name19(group)})
    b.add("location-name-lookalike", PLACE19_TEMPLATES, len(PLACES19), {"place19": f_place19})
    b.add("negative-name-lookalike", NEGATIVE19_TEMPLATES)
    # issue 19: secrets and documents
    issue19.add_to(b)
    # issue 19: addresses
    issue19_addresses.add_to(b)
    for number, example in enumerate(b.examples, start=1):
        example.id = f"pii-{number:04d}"
    return b.examples


def check(examples: list[Example]) -> None:
    """Re-check every span and the invariants the evaluation relies on."""
    assert len({e.id for e in examples}) == len(examples)
    assert len({e.text for e in examples}) == len(examples)
    for e in examples:
        assert unicodedata.is_normalized("NFC", e.text), e.id
        assert (not e.spans) == e.category.startswith("negative-"), e.id
        end = 0
        for (start, stop, entity), value in zip(e.spans, e.values, strict=True):
            assert end <= start < stop <= len(e.text), e.id
            assert e.text[start:stop] == value == value.strip(), e.id
            assert entity in ENTITY_TYPES, e.id
            if entity == CARD:
                assert luhn_valid(value.replace(" ", "").replace("-", "")), e.id
            if entity == IBAN:
                assert iban_valid(value), e.id
            end = stop
        if e.category == "negative-long-number":
            for token in e.text.replace(".", " ").replace(",", "").split():
                assert not (token.isdigit() and len(token) > 12 and luhn_valid(token)), e.id


def to_line(e: Example) -> str:
    spans = [{"start": s, "end": t, "type": k} for s, t, k in e.spans]
    record = {"id": e.id, "category": e.category, "text": e.text, "spans": spans}
    return json.dumps(record, ensure_ascii=False)


def main() -> None:
    examples = build(random.Random(SEED))
    check(examples)
    OUT_PATH.parent.mkdir(parents=True, exist_ok=True)
    OUT_PATH.write_text(
        "".join(to_line(e) + "\n" for e in examples), encoding="utf-8", newline="\n"
    )
    negatives = sum(1 for e in examples if not e.spans)
    spans = sum(len(e.spans) for e in examples)
    print(
        f"wrote {len(examples)} examples ({negatives} negative, {spans} spans) "
        f"to {OUT_PATH.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
