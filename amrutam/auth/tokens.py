"""JWT access tokens and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

from amrutam.auth.models import Role
from amrutam.errors import AuthenticationFailed
from amrutam.settings import Settings

ROLES = frozenset(role.value for role in Role)
# Verified tokens remembered per process (a client sends the same one many times).
_VERIFIED_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as proven by a valid access token."""

    user_id: uuid.UUID
    role: str
    family_id: uuid.UUID | None = None


class AccessTokens:
    algorithm = "HS256"

    def __init__(self, settings: Settings) -> None:
        self._key_id = settings.jwt_key_id
        self._keys = {settings.jwt_key_id: settings.jwt_secret.get_secret_value()}
        self._issuer = settings.jwt_issuer
        self.ttl = settings.access_token_ttl_s
        # token -> (who, expiry): only tokens whose signature and claims checked out.
        self._verified: dict[str, tuple[Principal, float]] = {}

    def issue(self, user_id: uuid.UUID, role: str, family_id: uuid.UUID) -> str:
        now = int(time.time())
        claims = {
            "sub": str(user_id),
            "role": role,
            "fam": str(family_id),
            "iss": self._issuer,
            "iat": now,
            "exp": now + self.ttl,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(
            claims,
            self._keys[self._key_id],
            algorithm=self.algorithm,
            headers={"kid": self._key_id},
        )

    def verify(self, token: str) -> Principal:
        """Who the token speaks for. A token verified before is only checked for expiry:
        its signature, issuer and claims cannot have changed."""
        known = self._verified.get(token)
        if known is not None:
            if time.time() < known[1]:
                return known[0]
            del self._verified[token]
        principal, expires_at = self._verify(token)
        if len(self._verified) >= _VERIFIED_MAX:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[token] = (principal, expires_at)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._keys.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise AuthenticationFailed("unknown signing key")
            claims = jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                issuer=self._issuer,
                options={"require": ["sub", "exp", "iat", "role"]},
            )
            family, role = claims.get("fam"), claims["role"]
            if role not in ROLES or not isinstance(claims["sub"], str):
                raise ValueError("unknown role or subject")
            if family is not None and not isinstance(family, str):
                raise ValueError("the family claim is not a string")
            who = Principal(
                user_id=uuid.UUID(claims["sub"]),
                role=role,
                family_id=uuid.UUID(family) if family else None,
            )
            return who, float(claims["exp"])
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationFailed("access token expired") from exc
        except (jwt.PyJWTError, ValueError, TypeError, AttributeError) as exc:
            raise AuthenticationFailed("invalid access token") from exc


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    # Refresh tokens are 256 random bits: a fast hash is enough, no salt needed.
    return hashlib.sha256(token.encode()).hexdigest()
