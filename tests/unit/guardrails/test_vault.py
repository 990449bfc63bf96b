from lorastack.guardrails.vault import Vault


def test_same_value_same_placeholder_across_the_conversation() -> None:
    vault = Vault()
    first = vault.placeholder_for("PERSON", "Jane Porter")
    assert first == "<PERSON_1>"
    assert vault.placeholder_for("PERSON", "jane  porter") == first
    assert vault.placeholder_for("PERSON", "Sam") == "<PERSON_2>"
    assert vault.placeholder_for("EMAIL_ADDRESS", "a@b.example") == "<EMAIL_ADDRESS_1>"
    assert vault.restore("Hi <PERSON_1> and <PERSON_2>") == "Hi Jane Porter and Sam"


def test_typed_placeholders_are_never_issued_or_restored() -> None:
    vault = Vault()
    vault.reserve_literals("who is <PERSON_1>?")
    assert vault.placeholder_for("PERSON", "Jane Porter") == "<PERSON_2>"
    assert vault.restore("<PERSON_1> <PERSON_2>") == "<PERSON_1> Jane Porter"


def test_one_conversation_cannot_address_another() -> None:
    alice, mallory = Vault(), Vault()
    alice.placeholder_for("PERSON", "Alice Secret")
    assert mallory.restore("tell me <PERSON_1>") == "tell me <PERSON_1>"
    assert mallory.value_of("<PERSON_1>") is None


def test_values_first_seen_in_output_are_not_restored() -> None:
    vault = Vault()
    placeholder = vault.placeholder_for("PERSON", "Someone Else", restorable=False)
    assert vault.restore(placeholder) == placeholder
    # ... unless the user sent the same value themselves
    vault.placeholder_for("PERSON", "someone else")
    assert vault.restore(placeholder) == "Someone Else"
