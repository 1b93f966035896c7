"""Codes, tokens and keyed hashes."""

from __future__ import annotations

import re

from codexrelay.crypto import CODE_ALPHABET, keyed_hash, new_code, new_secret, normalize_code


def test_code_alphabet_is_32_unambiguous_characters():
    """Codes use 32 symbols with no I, L, O or U: 5 bits per character."""
    assert len(set(CODE_ALPHABET)) == 32
    assert not set("ILOU") & set(CODE_ALPHABET)


def test_new_code_shape_and_entropy():
    """A code is XXXX-XXXX: 8 characters, 40 bits."""
    codes = {new_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}", c) for c in codes)


def test_normalize_code_accepts_typing_variants():
    """Lower case, spaces, a missing dash and O/I/L look-alikes all normalize."""
    assert normalize_code("k7qx m2pd") == "K7QX-M2PD"
    assert normalize_code("K7QXM2PD") == "K7QX-M2PD"
    assert normalize_code("OIL0-1111") == "0110-1111"


def test_secret_is_256_bits_url_safe():
    """Secrets are 43 URL-safe characters (256 bits)."""
    secret = new_secret()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)


def test_keyed_hash_depends_on_secret_and_purpose():
    """Rotating the secret or changing the purpose changes the hash."""
    base = keyed_hash("k" * 32, "pairing", "ABCD-EFGH")
    assert base != keyed_hash("j" * 32, "pairing", "ABCD-EFGH")
    assert base != keyed_hash("k" * 32, "invite", "ABCD-EFGH")
    assert base == keyed_hash("k" * 32, "pairing", "ABCD-EFGH")
