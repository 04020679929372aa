import pytest

from surge.tracking.tokens import Hit, TokenSigner

signer = TokenSigner("a-key")


def test_a_signed_token_verifies_to_its_hit() -> None:
    token = signer.sign("open", 12, 34)
    assert signer.verify("open", token) == Hit("open", 12, 34)


def test_click_tokens_carry_the_target_url() -> None:
    token = signer.sign("click", 1, 2, "https://example.org/é?a=1&b=2")
    assert signer.verify("click", token) == Hit("click", 1, 2, "https://example.org/é?a=1&b=2")


def test_a_token_of_one_kind_does_not_verify_as_another() -> None:
    assert signer.verify("unsubscribe", signer.sign("open", 1, 2)) is None


def test_another_key_does_not_verify() -> None:
    assert TokenSigner("other").verify("open", signer.sign("open", 1, 2)) is None


@pytest.mark.parametrize("bad", ["", ".", "abc", "abc.def", "!!!.???", "a" * 500])
def test_garbage_does_not_verify(bad: str) -> None:
    assert signer.verify("open", bad) is None


def test_every_single_character_change_is_rejected() -> None:
    token = signer.sign("unsubscribe", 99, 100)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i, ch in enumerate(token):
        if ch == ".":
            continue
        replacement = alphabet[(alphabet.index(ch) + 1) % len(alphabet)]
        tampered = token[:i] + replacement + token[i + 1 :]
        hit = signer.verify("unsubscribe", tampered)
        assert hit is None or hit == Hit("unsubscribe", 99, 100), tampered
