"""API keys with roles. A key is sent as ``Authorization: Bearer <key>`` or ``X-API-Key``.

Keys are held only as SHA-256 digests in memory and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from fastapi import HTTPException, Request, status

ROLE_RANK = {"viewer": 0, "responder": 1, "admin": 2}


@dataclass(frozen=True)
class Principal:
    name: str
    role: str


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    def __init__(self) -> None:
        self._keys: list[tuple[bytes, Principal]] = []

    def add(self, key: str, name: str, role: str) -> None:
        if role not in ROLE_RANK:
            raise ValueError(f"unknown role {role!r}")
        self._keys.append((_digest(key), Principal(name, role)))

    @classmethod
    def from_pairs(cls, items: Iterable[tuple[str, str, str]]) -> KeyRing:
        ring = cls()
        for key, name, role in items:
            ring.add(key, name, role)
        return ring

    def lookup(self, key: str) -> Principal | None:
        digest = _digest(key)
        found: Principal | None = None
        for known, principal in self._keys:  # no early exit: constant time over the ring
            if hmac.compare_digest(known, digest):
                found = principal
        return found

    def __len__(self) -> int:
        return len(self._keys)


def generate_key() -> str:
    return "cw_" + secrets.token_urlsafe(24)


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key else None


def require(role: str) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: 401 without a valid key, 403 when its role is below ``role``."""
    needed = ROLE_RANK[role]

    async def dependency(request: Request) -> Principal:
        key = _presented_key(request)
        if key is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        ring: KeyRing = request.app.state.keyring
        principal = ring.lookup(key)
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="unknown API key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if ROLE_RANK[principal.role] < needed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"this action needs the {role!r} role; key {principal.name!r} "
                f"has {principal.role!r}",
            )
        return principal

    return dependency
