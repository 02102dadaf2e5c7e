"""Idempotency keys in Redis: replay a finished request, refuse a concurrent duplicate.

A key is scoped to its caller, so two callers using the same key never collide. The
first request claims the key with ``SET NX`` (marked running, with a fingerprint of the
request); when it finishes its response replaces the claim for 24 hours.

Responses that carry credentials (tokens) are stored sealed: encrypted and authenticated
(Fernet, with a key derived from the JWT secret), so what Redis holds is no token.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import hashlib
from dataclasses import dataclass

import orjson
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from redis.asyncio import Redis
from redis.exceptions import RedisError

from amrutam.infra.ratelimit import HIT_LUA, carrying_the_pending_hit

# SET NX, or GET what the key holds: atomic, so the key cannot expire in between.
_CLAIM = (
    HIT_LUA
    + """
if redis.call('SET', KEYS[3], ARGV[3], 'NX', 'EX', ARGV[4]) then
  return {count, pttl, revoked, 1}
end
return {count, pttl, revoked, 0, redis.call('GET', KEYS[3])}
"""
)


class Outcome(enum.Enum):
    STARTED = "started"  # we own the key: run the request, then complete() or abandon()
    REPLAY = "replay"  # finished before with the same body: send the stored response
    IN_FLIGHT = "in_flight"  # the first request is still running
    MISMATCH = "mismatch"  # the key was used for a different request


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: Outcome
    response: StoredResponse | None = None


def fingerprint(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def sealing_key(secret: bytes) -> Fernet:
    """A Fernet key of its own, derived from a server secret (HKDF-SHA256)."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"amrutam-idempotency")
    return Fernet(base64.urlsafe_b64encode(derived.derive(secret)))


class IdempotencyStore:
    def __init__(self, redis: Redis, ttl_s: int, lock_s: int, sealer: Fernet | None = None) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._lock_s = lock_s
        self._sealer = sealer
        self._claim = redis.register_script(_CLAIM)
        self._freeing: set[asyncio.Future[None]] = set()

    @staticmethod
    def _key(scope: str, key: str) -> str:
        return f"idem:{scope}:{hashlib.sha256(key.encode()).hexdigest()}"

    async def claim(self, scope: str, key: str, print_: str) -> Claim:
        """Claim the key, or say what it holds. One round trip, which also carries the
        request's rate-limit hit (``ratelimit.carrying_the_pending_hit``).

        A caller cancelled while the claim is in flight (a client that hung up) may have
        claimed the key without knowing it; nobody would finish that claim, and a retry
        would get 409 until it expired. So the claim runs to its end, and a key it took
        for a caller that is gone is freed at once."""
        claiming = asyncio.ensure_future(self._claim_now(scope, key, print_))
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            claiming.add_done_callback(lambda done: self._free_if_taken(done, scope, key))
            raise

    def _free_if_taken(self, claiming: asyncio.Future[Claim], scope: str, key: str) -> None:
        if claiming.cancelled() or claiming.exception() is not None:
            return
        if claiming.result().outcome is Outcome.STARTED:
            freeing = asyncio.ensure_future(self._forget(scope, key))
            self._freeing.add(freeing)
            freeing.add_done_callback(self._freeing.discard)

    async def _forget(self, scope: str, key: str) -> None:
        with contextlib.suppress(RedisError):  # then it expires after lock_s, as before
            await self.abandon(scope, key)

    async def _claim_now(self, scope: str, key: str, print_: str) -> Claim:
        running = orjson.dumps({"state": "running", "fp": print_})
        found = await carrying_the_pending_hit(
            self._claim, [self._key(scope, key)], [running, self._lock_s]
        )
        if found[0] == 1:
            return Claim(Outcome.STARTED)
        if len(found) < 2:  # no value after a failed SET NX: never inside one script
            return Claim(Outcome.IN_FLIGHT)
        stored = orjson.loads(found[1])
        if stored.get("fp") != print_:
            return Claim(Outcome.MISMATCH)
        if stored.get("state") == "running":
            return Claim(Outcome.IN_FLIGHT)
        body = stored["body"].encode()
        if stored.get("sealed"):
            if self._sealer is None:
                return Claim(Outcome.MISMATCH)
            try:
                body = self._sealer.decrypt(body)
            except InvalidToken:  # sealed under another secret: cannot be replayed
                return Claim(Outcome.MISMATCH)
        return Claim(Outcome.REPLAY, StoredResponse(stored["status"], body, stored["headers"]))

    async def complete(
        self, scope: str, key: str, print_: str, response: StoredResponse, *, sealed: bool = False
    ) -> None:
        """Keep the response for replay; ``sealed`` ones (carrying tokens) encrypted."""
        if sealed and self._sealer is None:
            raise ValueError("a sealed response needs the store's sealing key")
        body = response.body.decode("utf-8", errors="replace")
        if sealed and self._sealer is not None:
            body = self._sealer.encrypt(response.body).decode()
        value = {
            "state": "done",
            "fp": print_,
            "status": response.status,
            "body": body,
            "headers": response.headers,
            "sealed": sealed,
        }
        await self._redis.set(self._key(scope, key), orjson.dumps(value), ex=self._ttl_s)

    async def abandon(self, scope: str, key: str) -> None:
        """Forget a claim whose request failed, so that a retry can run."""
        await self._redis.delete(self._key(scope, key))
