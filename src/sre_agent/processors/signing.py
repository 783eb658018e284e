"""Ed25519 signatures on decision events (plans, approvals, actions, results).

Anyone who can write to the broker could otherwise make the agent act. The
agent signs every event it produces on a decision topic and its decision stages
refuse what they cannot verify. The signature covers the event's JSON object
exactly as it went on the wire, minus its ``signature`` member, in a canonical
form: keys sorted at every level, no whitespace, UTF-8 (orjson
``OPT_SORT_KEYS``). A consumer in any language verifies it by parsing the
message, removing ``signature``, re-serialising that way and checking the
base64 signature against the public key named by ``key_id``
(``sre-agent keys public`` prints it). Verification works on raw JSON objects,
never on re-serialised models, so it does not depend on the schema version.

Keys: an Ed25519 private key in PKCS#8 PEM, or the base64 of its 32 raw bytes,
from ``SRE_AGENT_SECURITY__SIGNING_KEY`` (a Kubernetes Secret). Public keys
trusted besides the own one (key rotation) are listed in
``security.trusted_keys`` (PEM or base64 of the 32 raw bytes).

Examples
--------
>>> signer = Signer.generate()
>>> raw = signer.sign_dict({"plan_id": "p1", "decision": "approve", "user": "ann"})
>>> sorted(raw)
['decision', 'key_id', 'plan_id', 'signature', 'user']
>>> keys = Keyring([signer.public])
>>> keys.verify(raw).ok
True
>>> raw["decision"] = "reject"                       # tampered after signing
>>> keys.verify(raw).reason
'bad signature'
>>> Keyring([signer.public]).verify({"plan_id": "p1"}).reason
'unsigned'
>>> Keyring([]).verify(signer.sign_dict({"a": 1})).reason.startswith("unknown key_id")
True
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["Check", "Keyring", "Signer", "SigningError", "canonical", "key_id_of",
           "load_private_key", "load_public_key", "public_pem"]


class SigningError(ValueError):
    """A key that cannot be read; the message says why (never the key)."""


def canonical(obj: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: ``obj`` minus ``signature``, keys sorted, compact."""
    body = {k: v for k, v in obj.items() if k != "signature"}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(key: Ed25519PublicKey) -> str:
    """First 16 hex digits of sha256 over the 32 raw public-key bytes."""
    return hashlib.sha256(_raw_public(key)).hexdigest()[:16]


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def load_private_key(text: str) -> Ed25519PrivateKey:
    """PKCS#8 PEM or base64 of the 32 raw bytes."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise SigningError(f"not an Ed25519 private key (PKCS#8 PEM or base64 of 32 bytes): "
                           f"{type(exc).__name__}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"the signing key is a {type(key).__name__}, not Ed25519")
    return key


def load_public_key(text: str) -> Ed25519PublicKey:
    """SubjectPublicKeyInfo PEM or base64 of the 32 raw bytes."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise SigningError(f"not an Ed25519 public key (PEM or base64 of 32 bytes): "
                           f"{type(exc).__name__}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"trusted key is a {type(key).__name__}, not Ed25519")
    return key


class Signer:
    """Signs JSON objects with one Ed25519 private key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = key.public_key()
        self.key_id = key_id_of(self.public)

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_text(cls, text: str) -> Signer:
        return cls(load_private_key(text))

    def private_pem(self) -> str:
        return self._key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()).decode("ascii")

    def sign_dict(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``obj`` with ``key_id`` and ``signature`` set."""
        out = {k: v for k, v in obj.items() if k != "signature"}
        out["key_id"] = self.key_id
        out["signature"] = base64.b64encode(self._key.sign(canonical(out))).decode("ascii")
        return out

    def sign_bytes(self, obj: Mapping[str, Any]) -> bytes:
        """The signed object as the JSON bytes to produce."""
        return orjson.dumps(self.sign_dict(obj))


@dataclass(frozen=True, slots=True)
class Check:
    """Outcome of a verification: ``ok``, the key that signed, or why not."""

    ok: bool
    key_id: str | None = None
    reason: str = ""


class Keyring:
    """The public keys whose signatures are accepted."""

    def __init__(self, keys: Iterable[Ed25519PublicKey]) -> None:
        self._keys = {key_id_of(k): k for k in keys}

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        return dict(self._keys)

    def verify(self, obj: Any) -> Check:
        """Check the signature of one raw JSON object (a dict parsed from the wire)."""
        if not isinstance(obj, Mapping):
            return Check(False, None, "not a JSON object")
        sig, kid = obj.get("signature"), obj.get("key_id")
        if not sig or not kid:
            return Check(False, None, "unsigned")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            return Check(False, None, f"unknown key_id {str(kid)[:64]!r}")
        try:
            key.verify(base64.b64decode(str(sig), validate=True), canonical(obj))
        except (InvalidSignature, binascii.Error, ValueError, TypeError):
            return Check(False, kid, "bad signature")
        except orjson.JSONEncodeError:
            return Check(False, kid, "not canonicalisable")
        return Check(True, kid, "")

    def verify_bytes(self, raw: bytes | None) -> Check:
        if raw is None:
            return Check(False, None, "empty message")
        try:
            return self.verify(orjson.loads(raw))
        except orjson.JSONDecodeError:
            return Check(False, None, "invalid JSON")
