"""bcrypt hashing, off the event loop (a hash at cost 12 takes a quarter of a second of CPU)."""

from __future__ import annotations

import asyncio

import bcrypt


class PasswordHasher:
    def __init__(self, rounds: int) -> None:
        self._rounds = rounds
        # Checked against when the username does not exist, so that a login for an unknown user
        # costs the same time as a wrong password and does not reveal which usernames exist.
        self._decoy = bcrypt.hashpw(b"decoy-password-for-timing", bcrypt.gensalt(rounds))

    async def hash(self, password: str) -> str:
        hashed = await asyncio.to_thread(bcrypt.hashpw, password.encode(), bcrypt.gensalt(self._rounds))
        return hashed.decode()

    async def verify(self, password: str, hashed: str | None) -> bool:
        target = hashed.encode() if hashed else self._decoy
        candidate = password.encode()
        # Registration refuses passwords over bcrypt's 72-byte limit, so a longer one never matches;
        # still spend the same time on it.
        fits = len(candidate) <= 72
        matches = await asyncio.to_thread(_checkpw, candidate[:72], target)
        return matches and fits and hashed is not None


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # a malformed stored hash or a password bcrypt cannot take
        return False
