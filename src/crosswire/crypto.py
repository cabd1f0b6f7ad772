"""Per-client encryption for the rooms layer (``pip install crosswire[crypto]``).

The scheme is seed 003's (its helper's ECDH algorithm, newer version), so that its clients
work unchanged:

* **Keys**: ECDH on P-256. Public keys travel as the raw uncompressed point (65 bytes,
  ``0x04 || X || Y``) in standard padded base64.
* **Handshake**: the client sends its public key in ``authenticate`` (``data.publicKey``);
  the server answers in ``connected`` with ``serverPublicKey`` and a random 32-byte ``salt``
  (base64). Both sides derive a 256-bit AES-GCM key with HKDF-SHA256 over the ECDH secret,
  with that salt and the info string :data:`INFO`.
* **Messages**: each message the server sends is ``{"event":"encrypted","data":{"iv","ct"}}``:
  a random 12-byte IV and the ciphertext with its 16-byte tag, both base64, of the UTF-8 JSON
  ``{"event","data"}`` that would have been sent in clear.

:class:`Encryption` plugs this into :class:`~crosswire.rooms.RoomServer` as its ``handshake``
and ``outbound_transformer``. Sans-I/O: values in, values out.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import TYPE_CHECKING, Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

if TYPE_CHECKING:
    from .rooms import Handshake, RoomClient

__all__ = [
    "ENCRYPTED",
    "INFO",
    "Encryption",
    "KeyPair",
    "decrypt",
    "derive_key",
    "encrypt",
]

#: HKDF info string of seed 003's helper.
INFO = b"ignis-ecdh-p256-aes-256-gcm-v1"
#: The event that wraps an encrypted message.
ENCRYPTED = "encrypted"
_SALT_BYTES = 32
_IV_BYTES = 12
_KEY = "crosswire.encryption"  # where Encryption keeps a client's key (RoomClient.data)


class KeyPair:
    """A P-256 key pair; ``public_b64`` is the raw public point in base64."""

    def __init__(self) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        raw = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.public_b64 = base64.b64encode(raw).decode()


def derive_key(
    private_key: ec.EllipticCurvePrivateKey, peer_public_b64: str, salt: bytes
) -> AESGCM:
    """The AES-256-GCM key shared with the peer whose public key is ``peer_public_b64``.

    Raises ``ValueError`` for a public key that is not a base64 P-256 point.
    """
    try:
        raw = base64.b64decode(peer_public_b64, validate=True)
    except (binascii.Error, TypeError):
        raise ValueError("the public key is not base64") from None
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    secret = private_key.exchange(ec.ECDH(), peer)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=INFO).derive(secret)
    return AESGCM(key)


def encrypt(key: AESGCM, plaintext: bytes) -> dict[str, str]:
    """``{"iv", "ct"}`` (base64) of ``plaintext`` under ``key``, with a fresh random IV."""
    iv = os.urandom(_IV_BYTES)
    ct = key.encrypt(iv, plaintext, None)
    return {"iv": base64.b64encode(iv).decode(), "ct": base64.b64encode(ct).decode()}


def decrypt(key: AESGCM, sealed: dict[str, str]) -> bytes:
    """The plaintext of ``{"iv", "ct"}``; ``ValueError`` if it was not sealed with ``key``."""
    try:
        iv = base64.b64decode(sealed["iv"], validate=True)
        ct = base64.b64decode(sealed["ct"], validate=True)
        return key.decrypt(iv, ct, None)
    except (KeyError, TypeError, binascii.Error, InvalidTag) as exc:
        raise ValueError("not a message sealed with this key") from exc


class Encryption:
    """A ready-made ECDH handshake and outbound transformer for
    :class:`~crosswire.rooms.RoomServer`::

        encryption = Encryption()
        rooms = RoomServer(
            authenticate=...,
            require_encryption=True,
            handshake=encryption.handshake,
            outbound_transformer=encryption.transform,
        )

    Each client's key lives in its :attr:`RoomClient.data <crosswire.rooms.RoomClient.data>`
    and goes with it.
    """

    def handshake(self, client: RoomClient, data: Any) -> Handshake | None:
        """Derive the client's key from ``data["publicKey"]``; None (handshake failed) when
        there is no valid public key."""
        from .rooms import Handshake

        public_key = data.get("publicKey") if isinstance(data, dict) else None
        if not isinstance(public_key, str):
            return None
        server = KeyPair()
        salt = os.urandom(_SALT_BYTES)
        try:
            client.data[_KEY] = derive_key(server.private_key, public_key, salt)
        except ValueError:
            return None
        return Handshake(server_public_key=server.public_b64, salt=base64.b64encode(salt).decode())

    def transform(self, client: RoomClient, event: str, data: Any) -> tuple[str, Any]:
        """``(event, data)`` sealed for ``client``: ``("encrypted", {"iv", "ct"})``, where the
        plaintext is the event's frame in the client's dialect (``{"event", "data"}`` in seed
        003's). A frame sent as it is (``hub.publish``, an error; ``event`` is ``""``) is
        sealed as it is: its text (UTF-8) or bytes."""
        key: AESGCM = client.data[_KEY]
        if not event and isinstance(data, str | bytes):
            return ENCRYPTED, encrypt(key, data.encode() if isinstance(data, str) else data)
        payload = None if data is None else orjson.dumps(data)
        frame = client.peer.dialect.message(event, None, payload)
        return ENCRYPTED, encrypt(key, frame)
