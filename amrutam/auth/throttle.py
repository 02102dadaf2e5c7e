"""Throttles of guessing: how many passwords, or second-factor codes, anyone may try.

Every attempt is counted before it is checked (a hit, never a peek), so requests in
flight at the same moment cannot all pass one check. Three counters:
- per address: every attempt, whatever the account;
- per account and address: the tight one; someone guessing from elsewhere locks only
  themselves out, not the owner;
- per account, from anywhere: a higher ceiling against guessing spread over many
  addresses.
A success clears the account's counters (the address keeps counting).
"""

from __future__ import annotations

from collections.abc import Callable

from amrutam.errors import Busy
from amrutam.infra.ratelimit import Decision, Policy, RateLimiter
from amrutam.settings import Settings

Note = Callable[[Decision], None]


def ignore(_: Decision) -> None:
    pass


class Throttle:
    def __init__(
        self,
        limiter: RateLimiter,
        per_address: Policy,
        per_pair: Policy,
        per_account: Policy,
        what: str,
    ) -> None:
        self._limiter = limiter
        self._per_address = per_address
        self._per_pair = per_pair
        self._per_account = per_account
        self._what = what

    @classmethod
    def for_passwords(cls, limiter: RateLimiter, settings: Settings) -> Throttle:
        return cls(
            limiter,
            Policy.parse("login-ip", settings.rate_limit_login_ip),
            Policy.parse("login-account", settings.rate_limit_login_account),
            Policy.parse("login-account-total", settings.rate_limit_login_account_total),
            "login attempts",
        )

    @classmethod
    def for_codes(cls, limiter: RateLimiter, settings: Settings) -> Throttle:
        return cls(
            limiter,
            Policy.parse("mfa-ip", settings.rate_limit_mfa_ip),
            Policy.parse("mfa-account", settings.rate_limit_mfa_account),
            Policy.parse("mfa-account-total", settings.rate_limit_mfa_account_total),
            "second-factor codes",
        )

    async def admit(self, account: str, address: str, note: Note = ignore) -> None:
        """Count this attempt; Busy (429) when any of its limits is spent."""
        account = account.lower()
        decisions = [
            await self._limiter.hit(self._per_address, address),
            await self._limiter.hit(self._per_pair, account, address),
            await self._limiter.hit(self._per_account, account),
        ]
        for decision in decisions:
            note(decision)
        refused = [d for d in decisions if not d.allowed]
        if refused:
            wait = max(d.reset_in for d in refused)
            raise Busy(f"too many {self._what}; try again later", wait)

    async def succeeded(self, account: str, address: str) -> None:
        account = account.lower()
        await self._limiter.clear(self._per_pair, account, address)
        await self._limiter.clear(self._per_account, account)
