"""Broker credentials and session tokens, encrypted at rest with Fernet (AES-128-CBC + HMAC).

The key is settings.credentials_key; the database only ever holds ciphertext, and nothing here logs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken


class VaultError(Exception):
    """Stored ciphertext that this key cannot open: the key changed, or the row was tampered with."""


@dataclass(frozen=True, slots=True, repr=False)
class StoredCredentials:
    app_key: str
    app_secret: str

    def __repr__(self) -> str:  # never print a secret, even in a traceback
        return f"StoredCredentials(app_key_hint={hint(self.app_key)!r})"


def hint(app_key: str) -> str:
    """Enough of the app key for a user to recognise it, never enough to use it."""
    return f"…{app_key[-4:]}" if len(app_key) > 4 else "…"


class CredentialsVault:
    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())

    def seal_credentials(self, credentials: StoredCredentials) -> str:
        payload = json.dumps({"app_key": credentials.app_key, "app_secret": credentials.app_secret})
        return self._fernet.encrypt(payload.encode()).decode()

    def open_credentials(self, sealed: str) -> StoredCredentials:
        data = json.loads(self._open(sealed))
        return StoredCredentials(app_key=data["app_key"], app_secret=data["app_secret"])

    def seal_session(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode()

    def open_session(self, sealed: str) -> str:
        return self._open(sealed)

    def _open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise VaultError("stored broker credentials cannot be decrypted with CREDENTIALS_KEY") from None
