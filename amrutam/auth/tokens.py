"""JWT access tokens, second-factor challenges and opaque refresh tokens."""

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
# The audience of a challenge (the password step of a two-step login). Access tokens
# have none, and PyJWT refuses a token with an audience where none is expected, so
# neither kind passes for the other.
_CHALLENGE_AUDIENCE = "amrutam:mfa"
# Verified tokens remembered per process (a client sends the same one many times).
_VERIFIED_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as proven by a valid access token."""

    user_id: uuid.UUID
    role: str
    family_id: uuid.UUID | None = None
    # An account that must enrol a second factor first: its token reaches only the
    # routes that let it do so.
    enrolling: bool = False


class AccessTokens:
    algorithm = "HS256"

    def __init__(self, settings: Settings) -> None:
        self._key_id = settings.jwt_key_id
        self._keys = {settings.jwt_key_id: settings.jwt_secret.get_secret_value()}
        self._issuer = settings.jwt_issuer
        self.ttl = settings.access_token_ttl_s
        self.challenge_ttl = settings.mfa_token_ttl_s
        # token -> (who, expiry): only tokens whose signature and claims checked out.
        self._verified: dict[str, tuple[Principal, float]] = {}

    def issue(
        self, user_id: uuid.UUID, role: str, family_id: uuid.UUID, *, enrolling: bool = False
    ) -> str:
        claims: dict[str, object] = {"sub": str(user_id), "role": role, "fam": str(family_id)}
        if enrolling:
            claims["mfa"] = "enrol"
        return self._sign(claims, self.ttl)

    def challenge(self, user_id: uuid.UUID) -> str:
        """Proof that the password was right, good only for ``/v1/auth/mfa/verify``."""
        return self._sign({"sub": str(user_id), "aud": _CHALLENGE_AUDIENCE}, self.challenge_ttl)

    def challenged(self, token: str) -> uuid.UUID:
        """The account a challenge was issued to; AuthenticationFailed if it is not one."""
        try:
            claims = jwt.decode(
                token,
                self._key_for(token),
                algorithms=[self.algorithm],
                issuer=self._issuer,
                audience=_CHALLENGE_AUDIENCE,
                options={"require": ["sub", "exp", "aud"]},
            )
            return uuid.UUID(claims["sub"])
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationFailed("the login step expired; log in again") from exc
        except (jwt.PyJWTError, ValueError, TypeError, AttributeError) as exc:
            raise AuthenticationFailed("invalid mfa_token") from exc

    def _sign(self, claims: dict[str, object], ttl: int) -> str:
        now = int(time.time())
        claims = {**claims, "iss": self._issuer, "iat": now, "exp": now + ttl}
        claims["jti"] = uuid.uuid4().hex
        return jwt.encode(
            claims,
            self._keys[self._key_id],
            algorithm=self.algorithm,
            headers={"kid": self._key_id},
        )

    def _key_for(self, token: str) -> str:
        kid = jwt.get_unverified_header(token).get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise jwt.InvalidKeyError("unknown signing key")
        return key

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
            claims = jwt.decode(
                token,
                self._key_for(token),
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
                enrolling=claims.get("mfa") == "enrol",
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
