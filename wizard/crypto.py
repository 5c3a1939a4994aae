"""Secrets at rest: Fernet tokens under a MultiFernet (newest key encrypts, every listed key decrypts)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with the configured keys."""


def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in settings.CARPWEB_ENCRYPTION_KEYS])


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode() if plain else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "A stored secret cannot be decrypted: CARPWEB_ENCRYPTION_KEYS no longer lists the key it was "
            "written with.") from None


def rotate(token: str) -> str:
    """Re-encrypt with the newest key (see README: key rotation)."""
    return _fernet().rotate(token.encode()).decode() if token else ""
