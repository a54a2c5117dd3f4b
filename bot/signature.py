"""Webhook signatures: HMAC-SHA256 over the raw body bytes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac


class SignatureError(Exception):
    """The delivery is not signed with our secret."""


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, signature_256: str | None, secret: str) -> None:
    """Accept only ``X-Hub-Signature-256``; the sha1 header alone is refused (it is weak)."""
    if not signature_256:
        raise SignatureError("missing X-Hub-Signature-256")
    if not signature_256.startswith("sha256="):
        raise SignatureError("X-Hub-Signature-256 must start with 'sha256='")
    # compare_digest refuses non-ASCII str (TypeError): compare bytes, so junk is a plain 401
    given = signature_256.strip().encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(sign(body, secret).encode(), given):
        raise SignatureError("signature does not match the body")
