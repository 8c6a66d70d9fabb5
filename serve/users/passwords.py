"""Password hashing: argon2id at the OWASP recommended minimum (19 MiB, t=2, p=1).

``verify`` takes the same path for an unknown account (a dummy hash) as for a wrong password,
so neither the answer nor its timing tells whether an email is registered.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32,
                        salt_len=16)
_DUMMY_HASH = HASHER.hash("afisha-dummy-password-for-unknown-accounts")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(HASHER.hash, password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return HASHER.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """True only for a stored hash that matches; ``None`` is checked against a dummy hash."""
    return await asyncio.to_thread(_verify, stored, password)


def needs_rehash(stored: str) -> bool:
    return HASHER.check_needs_rehash(stored)
