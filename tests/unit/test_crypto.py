"""Known-answer vectors for wgpy.core.crypto, each from a published source cited next to it."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from wgpy.core.crypto import (
    aead_decrypt,
    aead_encrypt,
    aead_nonce,
    dh,
    dh_pubkey,
    hash_,
    hchacha20,
    kdf1,
    kdf2,
    kdf3,
    xaead_decrypt,
    xaead_encrypt,
)

h = bytes.fromhex

SUNSCREEN = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future,"
    b" sunscreen would be it."
)
KEY_80_9F = bytes(range(0x80, 0xA0))


# RFC 8439, section 2.8.2: the ChaCha20-Poly1305 AEAD example. Its nonce is a 32-bit constant
# (07 00 00 00) followed by a 64-bit IV, so it only goes through pyca directly: WireGuard's nonce
# always starts with 32 zero bits and cannot express it.
RFC8439_282_AAD = h("50515253c0c1c2c3c4c5c6c7")
RFC8439_282_NONCE = h("070000004041424344454647")
RFC8439_282_SEALED = h(
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
    "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
    "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
    "3ff4def08e4b7a9de576d26586cec64b6116"
    "1ae10b594f09e26a7e902ecbd0600691"  # tag
)

# RFC 8439, appendix A.5: the AEAD decryption example. Its nonce, 00000000 0102030405060708, has
# exactly WireGuard's shape: 32 zero bits, then the counter 0x0807060504030201 little-endian.
RFC8439_A5_KEY = h("1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0")
RFC8439_A5_COUNTER = 0x0807060504030201
RFC8439_A5_AAD = h("f33388860000000000004e91")
RFC8439_A5_PLAINTEXT = h(
    "496e7465726e65742d4472616674732061726520647261667420646f63756d65"
    "6e74732076616c696420666f722061206d6178696d756d206f6620736978206d"
    "6f6e74687320616e64206d617920626520757064617465642c207265706c6163"
    "65642c206f72206f62736f6c65746564206279206f7468657220646f63756d65"
    "6e747320617420616e792074696d652e20497420697320696e617070726f7072"
    "6961746520746f2075736520496e7465726e65742d4472616674732061732072"
    "65666572656e6365206d6174657269616c206f7220746f206369746520746865"
    "6d206f74686572207468616e206173202fe2809c776f726b20696e2070726f67"
    "726573732e2fe2809d"
)
RFC8439_A5_SEALED = h(
    "64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb2"
    "4c6cfc18755d43eea09ee94e382d26b0bdb7b73c321b0100d4f03b7f355894cf"
    "332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c855"
    "9797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4"
    "b9166c767b804d46a59b5216cde7a4e99040c5a40433225ee282a1b0a06c523e"
    "af4534d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a"
    "0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a6727627097a10"
    "49e617d91d361094fa68f0ff77987130305beaba2eda04df997b714d6c6f2c29"
    "a6ad5cb4022b02709b"
    "eead9d67890cbb22392336fea1851f38"  # tag
)


def test_chacha20poly1305_seals_the_rfc8439_section_2_8_2_example() -> None:
    sealed = ChaCha20Poly1305(KEY_80_9F).encrypt(RFC8439_282_NONCE, SUNSCREEN, RFC8439_282_AAD)
    assert sealed == RFC8439_282_SEALED


def test_aead_nonce_is_32_zero_bits_then_the_counter_little_endian() -> None:
    assert aead_nonce(RFC8439_A5_COUNTER) == h("000000000102030405060708")
    assert aead_nonce(0) == bytes(12)


def test_aead_encrypt_reproduces_rfc8439_appendix_a5() -> None:
    sealed = aead_encrypt(RFC8439_A5_KEY, RFC8439_A5_COUNTER, RFC8439_A5_PLAINTEXT, RFC8439_A5_AAD)
    assert sealed == RFC8439_A5_SEALED


def test_aead_decrypt_opens_rfc8439_appendix_a5() -> None:
    opened = aead_decrypt(RFC8439_A5_KEY, RFC8439_A5_COUNTER, RFC8439_A5_SEALED, RFC8439_A5_AAD)
    assert opened == RFC8439_A5_PLAINTEXT


@pytest.mark.parametrize(
    ("counter", "sealed", "aad"),
    [
        (RFC8439_A5_COUNTER + 1, RFC8439_A5_SEALED, RFC8439_A5_AAD),
        (RFC8439_A5_COUNTER, RFC8439_A5_SEALED[:-1] + b"\x00", RFC8439_A5_AAD),
        (RFC8439_A5_COUNTER, RFC8439_A5_SEALED, RFC8439_A5_AAD[:-1]),
    ],
    ids=["wrong-counter", "forged-tag", "wrong-auth-data"],
)
def test_aead_decrypt_rejects_anything_but_the_sealed_message(
    counter: int, sealed: bytes, aad: bytes
) -> None:
    with pytest.raises(InvalidTag):
        aead_decrypt(RFC8439_A5_KEY, counter, sealed, aad)


# draft-irtf-cfrg-xchacha-03, section 2.2.1: the HChaCha20 test vector.
def test_hchacha20_derives_the_draft_section_2_2_1_subkey() -> None:
    key = bytes(range(32))
    nonce16 = h("000000090000004a0000000031415927")
    expected = h("82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc")
    assert hchacha20(key, nonce16) == expected


# draft-irtf-cfrg-xchacha-03, appendix A.3.1: the XChaCha20-Poly1305 AEAD example.
XCHACHA_A31_NONCE = bytes(range(0x40, 0x58))
XCHACHA_A31_AAD = h("50515253c0c1c2c3c4c5c6c7")
XCHACHA_A31_SEALED = h(
    "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
    "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
    "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
    "21f9664c97637da9768812f615c68b13b52e"
    "c0875924c1c7987947deafd8780acf49"  # tag
)


def test_xaead_encrypt_reproduces_the_xchacha_draft_appendix_a3_1() -> None:
    sealed = xaead_encrypt(KEY_80_9F, XCHACHA_A31_NONCE, SUNSCREEN, XCHACHA_A31_AAD)
    assert sealed == XCHACHA_A31_SEALED


def test_xaead_decrypt_opens_the_xchacha_draft_appendix_a3_1() -> None:
    opened = xaead_decrypt(KEY_80_9F, XCHACHA_A31_NONCE, XCHACHA_A31_SEALED, XCHACHA_A31_AAD)
    assert opened == SUNSCREEN


def test_xaead_decrypt_rejects_a_different_24_byte_nonce() -> None:
    nonce = XCHACHA_A31_NONCE[:-1] + b"\x00"
    with pytest.raises(InvalidTag):
        xaead_decrypt(KEY_80_9F, nonce, XCHACHA_A31_SEALED, XCHACHA_A31_AAD)


# RFC 7693, appendix B: BLAKE2s-256("abc").
def test_hash_is_blake2s_256_per_rfc7693_appendix_b() -> None:
    expected = h("508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982")
    assert hash_(b"abc") == expected


# wireguard-go, device/kdf_test.go (WireGuard/wireguard-go @ 3bf41b06): TestKDF's three vectors.
# KDF2 and KDF1 must return prefixes of KDF3's outputs, as that test also checks.
WIREGUARD_GO_KDF_VECTORS = [
    pytest.param(
        b"test-key",
        b"test-input",
        "6f0e5ad38daba1bea8a0d213688736f19763239305e0f58aba697f9ffc41c633",
        "df1194df20802a4fe594cde27e92991c8cae66c366e8106aaa937a55fa371e8a",
        "fac6e2745a325f5dc5d11a5b165aad08b0ada28e7b4e666b7c077934a4d76c24",
        id="test-key",
    ),
    pytest.param(
        b"wireguard",
        b"wireguard",
        "491d43bbfdaa8750aaf535e334ecbfe5129967cd64635101c566d4caefda96e8",
        "1e71a379baefd8a79aa4662212fcafe19a23e2b609a3db7d6bcba8f560e3d25f",
        "31e1ae48bddfbe5de38f295e5452b1909a1b4e38e183926af3780b0c1e1f0160",
        id="wireguard",
    ),
    pytest.param(
        b"",
        b"",
        "8387b46bf43eccfcf349552a095d8315c4055beb90208fb1be23b894bc2ed5d0",
        "58a0e5f6faefccf4807bff1f05fa8a9217945762040bcec2f4b4a62bdfe0e86e",
        "0ce6ea98ec548f8e281e93e32db65621c45eb18dc6f0a7ad94178610a2f7338e",
        id="empty",
    ),
]


@pytest.mark.parametrize(("key", "data", "t0", "t1", "t2"), WIREGUARD_GO_KDF_VECTORS)
def test_kdf3_matches_wireguard_go(key: bytes, data: bytes, t0: str, t1: str, t2: str) -> None:
    assert kdf3(key, data) == (h(t0), h(t1), h(t2))


@pytest.mark.parametrize(("key", "data", "t0", "t1", "t2"), WIREGUARD_GO_KDF_VECTORS)
def test_kdf2_matches_wireguard_go(key: bytes, data: bytes, t0: str, t1: str, t2: str) -> None:
    assert kdf2(key, data) == (h(t0), h(t1))


@pytest.mark.parametrize(("key", "data", "t0", "t1", "t2"), WIREGUARD_GO_KDF_VECTORS)
def test_kdf1_matches_wireguard_go(key: bytes, data: bytes, t0: str, t1: str, t2: str) -> None:
    assert kdf1(key, data) == h(t0)


# RFC 7748, section 6.1: the X25519 Diffie-Hellman example (Alice and Bob).
ALICE_PRIVATE = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_PRIVATE = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUBLIC = h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED_SECRET = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")


def test_dh_pubkey_matches_rfc7748_section_6_1() -> None:
    assert dh_pubkey(ALICE_PRIVATE) == ALICE_PUBLIC
    assert dh_pubkey(BOB_PRIVATE) == BOB_PUBLIC


def test_dh_agrees_on_the_rfc7748_section_6_1_shared_secret() -> None:
    assert dh(ALICE_PRIVATE, BOB_PUBLIC) == SHARED_SECRET
    assert dh(BOB_PRIVATE, ALICE_PUBLIC) == SHARED_SECRET


def test_dh_refuses_a_low_order_public_key() -> None:
    # The all-zero point has order 1; the shared secret would be all zeros.
    with pytest.raises(ValueError):
        dh(ALICE_PRIVATE, bytes(32))
