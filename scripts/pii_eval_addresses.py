"""Issue 19's part of the PII evaluation set: postal addresses.

Used by `make_pii_eval.py` (its block `# issue 19: addresses`). Addresses in
running support messages, US, UK, Irish and continental European formats, with
flats and units, in lower case, several to a message and beside other personal
data; then look-alikes a guard must leave alone: street-named products, numbers
next to place names, order numbers, times and prices. Streets and towns are
real names; numbers and postcodes are random in each country's format.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

ADDRESS = "ADDRESS"
ENTITY_TYPES = (ADDRESS,)

_US = [
    ("Elm Street", "Springfield", "IL"), ("Maple Ave", "Boston", "MA"),
    ("Lakeview Drive", "Denver", "CO"), ("Harbor Blvd", "Seattle", "WA"),
    ("Pine Street", "Portland", "OR"), ("Market St", "Philadelphia", "Pennsylvania"),
    ("Oak Rd", "Austin", "TX"), ("W 34th St", "Chicago", "IL"),
    ("Sunset Boulevard", "Los Angeles", "CA"), ("Peachtree Road NE", "Atlanta", "GA"),
    ("Magnolia Lane", "Savannah", "Georgia"), ("N Michigan Ave", "Chicago", "IL"),
    ("Cedar Court", "Madison", "WI"), ("Fifth Avenue", "New York", "NY"),
]  # fmt: skip
_US_UNITS = ["", ", Apt 4B", " Suite 300", " #210", ", Unit 7", " Apt. 12"]
_UK = [
    ("Baker Street", "London", "NW1"), ("Kings Road", "Manchester", "M1"),
    ("Victoria Avenue", "Leeds", "LS6"), ("Hill Lane", "Glasgow", "G12"),
    ("Queen's Road", "Bristol", "BS8"), ("Station Road", "Cambridge", "CB1"),
    ("Church Lane", "York", "YO1"), ("Mill Close", "Norwich", "NR3"),
    ("Park Crescent", "Brighton", "BN2"), ("High Street", "Oxford", "OX1"),
]  # fmt: skip
_IE = [
    ("Main Street", "Dingle, Co. Kerry", "V92"), ("Grafton Street", "Dublin 2", "D02"),
    ("Patrick Street", "Cork", "T12"), ("Shop Street", "Galway", "H91"),
    ("O'Connell Street", "Limerick", "V94"),
]  # fmt: skip
_EIRCODE_CHARS = "0123456789ACDEFHKNPRTVWXY"
# (format, town) per country; {n} is a house number, {p} the postcode.
_EU: list[tuple[str, Callable[[Any], str]]] = [
    ("Hauptstraße {n}, {p} Berlin", lambda b: f"10{b.digits(3)}"),
    ("Goethestr. {n}a, {p} München", lambda b: f"80{b.digits(3)}"),
    ("Am Markt {n}, {p} Köln", lambda b: f"50{b.digits(3)}"),
    ("Berliner Straße {n}, {p} Frankfurt am Main", lambda b: f"60{b.digits(3)}"),
    ("Mariahilfer Straße {n}, {p} Wien", lambda b: f"1{b.rng.randint(10, 23):02d}0"),
    ("Bahnhofstrasse {n}, {p} Zürich", lambda b: f"80{b.digits(2)}"),
    ("{n} rue de la Paix, {p} Paris", lambda b: f"750{b.rng.randint(1, 20):02d}"),
    ("{n} bis boulevard Voltaire, {p} Lyon", lambda b: f"6900{b.rng.randint(1, 9)}"),
    ("{n} avenue Jean Médecin, {p} Nice", lambda b: f"060{b.digits(2)}"),
    ("Rue Neuve {n}, {p} Bruxelles", lambda b: "1000"),
    ("Keizersgracht {n}, {p} Amsterdam", lambda b: f"10{b.digits(2)} {_letters(b, 2)}"),
    ("Damstraat {n}-II, {p} Utrecht", lambda b: f"35{b.digits(2)} {_letters(b, 2)}"),
    ("Calle Mayor {n}, 3º B, {p} Madrid", lambda b: f"280{b.digits(2)}"),
    ("Avenida de la Constitución {n}, {p} Sevilla", lambda b: f"410{b.digits(2)}"),
    ("Carrer de Balmes {n}, {p} Barcelona", lambda b: f"080{b.digits(2)}"),
    ("Via Roma {n}, {p} Roma", lambda b: f"001{b.digits(2)}"),
    ("Piazza San Marco {n}, {p} Venezia", lambda b: f"301{b.digits(2)}"),
    ("Corso Buenos Aires {n}, {p} Milano", lambda b: f"201{b.digits(2)}"),
    ("Rua Augusta {n}, {p} Lisboa", lambda b: f"1100-{b.digits(3)}"),
    ("Weteringschans {n}, {p} Amsterdam", lambda b: f"10{b.digits(2)} {_letters(b, 2)}"),
]


def _letters(b: Any, n: int) -> str:
    return "".join(b.rng.choice(string.ascii_uppercase) for _ in range(n))


def _number(b: Any) -> int:
    return int(b.rng.choice([b.rng.randint(1, 99), b.rng.randint(100, 9999)]))


def _us(b: Any) -> str:
    street, city, state = _US[b.rotate("address-us", len(_US))]
    unit = _US_UNITS[b.rotate("address-us-unit", len(_US_UNITS))]
    zip_code = b.digits(5) + (f"-{b.digits(4)}" if b.rotate("address-zip4", 4) == 0 else "")
    if b.rotate("address-us-commas", 3) == 2:
        return f"{_number(b)} {street}{unit} {city} {state} {zip_code}"
    return f"{_number(b)} {street}{unit}, {city}, {state} {zip_code}"


def _uk(b: Any) -> str:
    street, town, district = _UK[b.rotate("address-uk", len(_UK))]
    postcode = f"{district} {b.rng.randint(1, 9)}{_letters(b, 2)}"
    style = b.rotate("address-uk-style", 3)
    if style == 0:
        return f"Flat {b.rng.randint(1, 12)}, {_number(b)} {street}, {town} {postcode}"
    if style == 1:
        return f"{_number(b)} {street}, {town}, {postcode}"
    return f"{b.rng.randint(1, 99)}{b.rng.choice('AB')} {street}, {town} {postcode}"


def _ie(b: Any) -> str:
    street, town, routing = _IE[b.rotate("address-ie", len(_IE))]
    eircode = f"{routing} " + "".join(b.rng.choice(_EIRCODE_CHARS) for _ in range(4))
    if b.rotate("address-ie-unit", 2) == 0:
        return f"Apartment {b.rng.randint(1, 30)}, {_number(b)} {street}, {town}, {eircode}"
    return f"{_number(b)} {street}, {town}, {eircode}"


def _eu(b: Any) -> str:
    form, postcode = _EU[b.rotate("address-eu", len(_EU))]
    return form.format(n=b.rng.randint(1, 180), p=postcode(b))


def _street_only(b: Any) -> str:
    street, _, _ = _US[b.rotate("address-street", len(_US))]
    return f"{_number(b)} {street}"


def _any(b: Any) -> str:
    return [_us, _uk, _ie, _eu][b.rotate("address-any", 4)](b)


def _as(make: Callable[[Any], str], lower: bool = False) -> Callable[[Any, Any], Any]:
    def factory(b: Any, who: Any) -> Any:
        value = make(b)
        return (value.lower() if lower else value, ADDRESS)

    return factory


TEMPLATES = [
    "Please ship the order to {addr}.",
    "My new address is {addr}, can you update my account?",
    "Can you change the delivery address on {order} to {addr}?",
    "The parcel was sent to {addr} but I moved out in March.",
    "Billing address: {addr}",
    "I live at {addr} and the courier says it doesn't exist.",
    "Please post the replacement card to {addr}, thanks.",
    "Send the invoice to {addr} instead of our old office.",
]
LOWER_TEMPLATES = [
    "pls send it to {addr} thx",
    "my address is {addr} the driver couldnt find it",
    "can u deliver to {addr} tomorrow",
]
LONG_TEMPLATES = [
    "Hi, I ordered two bags of the house espresso blend and a grinder last Tuesday and the "
    "tracking page has said 'in transit' for five days now. Could you check with the courier? "
    "The address on the order is {addr}, and I'm in all day.",
    "Good morning. We have moved our office and the next invoices and the spare router should "
    "go to {addr} from now on. Our accounts team also asked whether the direct debit date can "
    "move to the first of the month.",
]
SEVERAL_TEMPLATES = [
    "Send the first box to {addr} and the second one to {addr2}.",
    "Billing address is {addr}, delivery address is {addr2}.",
    "I moved from {addr} to {addr2}, please update both the card and the account.",
]
MIXED_TEMPLATES = [
    "I'm {name}, {addr}, phone {phone}. Where is my parcel?",
    "Please deliver to {name} at {addr}; reach me on {email}.",
    "Refund the order {order} and collect the grinder from {addr}, ask for {first}.",
]
STREET_TEMPLATES = [
    "the parcel went to {street} instead of my house",
    "Please deliver to {street}, the house with the blue door.",
    "I'm at {street} now.",
]
NEGATIVE_TEMPLATES: dict[str, list[str]] = {
    "negative-address-lookalike": [
        "My 500 Series espresso machine leaks from the steam wand.",
        "I'd love another Route 66 mug, the last one broke.",
        "Is the 3 Main Street Blend available in whole beans?",
        "Please add 3 Baker Street Roast to my standing order.",
        "One Park Avenue latte and two croissants, please.",
        "We need 12 boxes of Oxford notebooks for the office.",
        "I bought 2 Broadway Tote bags and 1 Madison Avenue scarf.",
        "The 1600 Series router keeps rebooting.",
        "The 5th Avenue chocolate bar is sold out again.",
        "The Oxford Street store closes at 9 pm on Fridays.",
        "Room 101 on floor 3 has the broken projector.",
        "I paid 250 EUR for 10 Lakeside Lights candles.",
        "Order #448812 included 3 Victoria Sponge cakes.",
        "I live on the 4th floor and the lift is broken since 2 weeks.",
        "My flight BA 2490 lands at Terminal 5 at 14:35.",
        "We ordered 40 sandwiches for 15 people at 12 noon.",
        "Can I get 2 Hill Street Blues DVDs shipped with order {order}?",
        "The 221B Baker Street puzzle is missing 3 pieces.",
        "Our Station Road branch has 4 tills and 2 card readers.",
        "The 10 Downing Street tea tin is back in stock?",
        "Tracking {trk} says it left the Park Lane depot at {time}.",
        "Is the Via Roma 15 ml espresso cup dishwasher safe?",
        "The invoice {inv} lists 24 Elm Street Candles at {price} each.",
        "My account shows 3 orders from the Market St kiosk this week.",
        "We open at {time} on High Street and at 10 on Sundays.",
        "Meet me at gate 12 of Terminal 2, the 7 Dials cafe.",
        "Tables 5 and 6 near the Hauptstraße window are booked.",
        "Firmware {ver} for the 7 Harbor Drive speakers fixed the hum.",
    ],
}


def add_to(b: Any) -> None:
    """Add the address categories, positives then look-alike negatives."""
    any_address = {"addr": _as(_any), "addr2": _as(_any)}
    b.add("address-us", TEMPLATES, 14, {"addr": _as(_us)})
    b.add("address-uk", TEMPLATES, 10, {"addr": _as(_uk)})
    b.add("address-ie", TEMPLATES, 5, {"addr": _as(_ie)})
    b.add("address-eu", TEMPLATES, 20, {"addr": _as(_eu)})
    b.add("address-lowercase", LOWER_TEMPLATES, 6, {"addr": _as(_any, lower=True)})
    b.add("address-long-message", LONG_TEMPLATES, 4, any_address)
    b.add("address-several", SEVERAL_TEMPLATES, 5, any_address)
    b.add("address-mixed", MIXED_TEMPLATES, 6, any_address)
    b.add("address-street-only", STREET_TEMPLATES, 3, {"street": _as(_street_only)})
    for category, templates in NEGATIVE_TEMPLATES.items():
        b.add(category, templates)
