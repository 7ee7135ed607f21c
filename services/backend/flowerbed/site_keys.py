"""A site's SuperNode public key: parsed, checked and fingerprinted before the SuperLink sees it.

Flower's `flwr supernode register` reads an OpenSSH public key (`ssh-keygen -t ecdsa -b 384`), requires
an EC key on a NIST curve and sends it to the Control API as PEM (SubjectPublicKeyInfo). We do the same
with Flower's own helpers, so a bad key is a 422 naming the field instead of an opaque SuperLink error.
The fingerprint is OpenSSH's (`ssh-keygen -lf key.pub`: SHA256 of the key blob, base64 without padding),
so an operator can compare it with what the site prints.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flwr.supercore.primitives.asymmetric import bytes_to_public_key, public_key_to_bytes, uses_nist_ec_curve

MAX_KEY_CHARS = 4096  # an OpenSSH P-521 public key line is ~270 characters


class InvalidSiteKey(ValueError):
    """The text is not an OpenSSH EC public key on a NIST curve; the message says why."""


def parse_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The key of an OpenSSH public key line (`ecdsa-sha2-nistp384 AAAA… comment`)."""
    line = text.strip()
    if not line:
        raise InvalidSiteKey("empty: paste the site's supernode.pub (one line starting with ecdsa-sha2-)")
    if len(line) > MAX_KEY_CHARS:
        raise InvalidSiteKey(f"longer than {MAX_KEY_CHARS} characters: not an OpenSSH public key")
    if "PRIVATE KEY" in line:
        raise InvalidSiteKey("this is a private key: paste the .pub file, and keep the private key on the site")
    try:
        key = serialization.load_ssh_public_key(line.encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidSiteKey(f"not an OpenSSH public key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        kind = type(key).__name__.removeprefix("_")
        raise InvalidSiteKey(f"not an EC key ({kind}): SuperNodes need one (ssh-keygen -t ecdsa -b 384)")
    if not uses_nist_ec_curve(key):
        raise InvalidSiteKey(f"EC curve {key.curve.name} is not a NIST curve (ssh-keygen -t ecdsa -b 384 makes one)")
    return key


def to_flower_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    """What the Control API's RegisterNodeRequest.public_key carries (PEM, as `flwr supernode register`)."""
    return public_key_to_bytes(key)


def fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """`SHA256:…`, as `ssh-keygen -lf` prints it."""
    blob = base64.b64decode(key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def fingerprint_of_flower_bytes(data: bytes) -> str:
    """Fingerprint of a key as the SuperLink stores it (PEM); "" when it is none (nodes without auth)."""
    if not data:
        return ""
    try:
        return fingerprint(bytes_to_public_key(data))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return ""
