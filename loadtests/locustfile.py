"""The population of a telemedicine day, for Locust (traffic model: docs/performance.md).

Patients (85 %) search, read profiles and slots (a few through /fhir/R4), book with an
Idempotency-Key (some hold the slot first, then book it or let it go), wait in line for
a doctor's day, look at their appointments, sometimes cancel or reschedule; doctors
(12 %) publish slots, read their schedule and run consultations with prescriptions;
admins (3 %) query the audit trail. Doctors and admins log in with their second factor
(a TOTP code, as their authenticator app shows it). Accounts come from ``amrutam seed
--doctors N --patients M`` (all share ``SCALE_PASSWORD``). Conflicts a real user meets
(a slot someone else took: 409, 429) count as answers, not errors.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
from locust import FastHttpUser, between, task

import loadtests.slo  # noqa: F401  (the SLO gate)
from amrutam.dev.scale import (
    CITIES,
    LANGUAGES,
    SCALE_ADMINS,
    SCALE_PASSWORD,
    SPECIALTIES,
    admin_email,
    doctor_email,
    patient_email,
    totp_secret,
)

DOCTORS = int(os.environ.get("SEED_DOCTORS", "2000"))
PATIENTS = int(os.environ.get("SEED_PATIENTS", "5000"))
EXPECTED = (200, 201, 204, 409, 429)
# Think time multiplier: 1 is the traffic model's people; 0.1 makes each simulated user
# ten times as busy, so fewer users (and less Locust CPU) generate the same mix faster.
PACE = float(os.environ.get("LOAD_PACE", "1"))


class _Signed(FastHttpUser):
    """Locust's fast client (geventhttpclient): several times less of its CPU per request
    than the requests-based one, so that the load generator is not what saturates the
    box it shares with the platform."""

    abstract = True
    email = ""
    password = SCALE_PASSWORD

    def on_start(self) -> None:
        response = self.client.post(
            "/v1/auth/login",
            json={"email": self.email, "password": self.password},
            name="/v1/auth/login",
        )
        body = response.json() if response.ok else {}
        if body.get("mfa_required"):
            body = self._second_factor(body["mfa_token"])
        self.user_id = body.get("user", {}).get("id")
        self.bearer = f"Bearer {body.get('access_token', '')}"

    def _second_factor(self, mfa_token: str) -> dict[str, Any]:
        """The code the account's authenticator app shows now. Each code works once: when
        another device of the same account used it (401), wait for the next one, as a
        person would."""
        totp = pyotp.TOTP(totp_secret(self.email))
        for attempt in range(2):
            with self.client.post(
                "/v1/auth/mfa/verify",
                json={"mfa_token": mfa_token, "code": totp.now()},
                name="/v1/auth/mfa/verify",
                catch_response=True,
            ) as response:
                if response.status_code == 200:
                    body: dict[str, Any] = response.json()
                    return body
                if response.status_code == 401 and attempt == 0:
                    response.success()
                    time.sleep(totp.interval - time.time() % totp.interval + 0.5)
                    continue
                response.failure(f"{response.status_code}: {response.text[:200]}")
        return {}

    def call(self, method: str, path: str, name: str, **kwargs: Any) -> Any:
        headers = kwargs.setdefault("headers", {})
        headers["Authorization"] = self.bearer
        if method != "GET":
            headers["Idempotency-Key"] = uuid.uuid4().hex
        with self.client.request(
            method, path, name=name, catch_response=True, **kwargs
        ) as response:
            if response.status_code in EXPECTED:
                response.success()
                return response.json() if response.content else None
            response.failure(f"{response.status_code}: {response.text[:200]}")
            return None


class Patient(_Signed):
    weight = 85
    wait_time = between(0.5 * PACE, 2.0 * PACE)

    def on_start(self) -> None:
        self.email = patient_email(random.randrange(PATIENTS))
        super().on_start()
        self.booked: list[str] = []

    def _doctor(self) -> str:
        return str(
            uuid.uuid5(
                uuid.UUID("3f6c0a52-8a0e-4b7e-9d0c-7e6f1b2a9c41"), f"d:{random.randrange(DOCTORS)}"
            )
        )

    @task(40)
    def search(self) -> None:
        params: dict[str, Any] = {"specialty": random.choice(SPECIALTIES)}
        roll = random.random()
        if roll < 0.4:
            params["city"] = random.choice(CITIES)
        elif roll < 0.6:
            params["language"] = random.choice(LANGUAGES)
        elif roll < 0.75:
            params["available_on"] = (
                (datetime.now(UTC) + timedelta(days=random.randint(1, 6))).date().isoformat()
            )
        if random.random() < 0.3:
            params["sort"] = random.choice(["fee", "-rating", "-experience"])
        self.call("GET", "/v1/doctors", "/v1/doctors?[filters]", params=params)

    @task(20)
    def profile(self) -> None:
        self.call("GET", f"/v1/doctors/{self._doctor()}", "/v1/doctors/{id}")

    @task(20)
    def slots(self) -> None:
        self.call(
            "GET",
            f"/v1/doctors/{self._doctor()}/slots",
            "/v1/doctors/{id}/slots",
            params={"limit": 20},
        )

    # The same reads through the FHIR facade (an app built on FHIR, a health system's
    # integration), a small share beside their /v1 twins.
    @task(3)
    def fhir_practitioner(self) -> None:
        doctor = self._doctor()
        self.call("GET", f"/fhir/R4/Practitioner/{doctor}", "/fhir/R4/Practitioner/{id}")

    @task(3)
    def fhir_slots(self) -> None:
        params = {"schedule": f"Schedule/{self._doctor()}", "status": "free", "_count": 20}
        self.call("GET", "/fhir/R4/Slot", "/fhir/R4/Slot?schedule=", params=params)

    def _open_slot(self) -> dict[str, Any] | None:
        listing = self.call(
            "GET",
            f"/v1/doctors/{self._doctor()}/slots",
            "/v1/doctors/{id}/slots",
            params={"limit": 20},
        )
        if not listing or not listing["items"]:
            return None
        slot: dict[str, Any] = random.choice(listing["items"])
        return slot

    @task(6)
    def book(self) -> None:
        slot = self._open_slot()
        if slot is None:
            return
        booked = self.call(
            "POST",
            "/v1/appointments/book",
            "/v1/appointments/book",
            json={"slot_id": slot["id"], "reason": "load test"},
        )
        if booked and booked.get("status") == "booked":
            self.booked.append(booked["id"])

    @task(3)
    def hold_then_decide(self) -> None:
        """Keep a slot while filling in the reason: most book it, some let it go."""
        slot = self._open_slot()
        if slot is None:
            return
        held = self.call("POST", f"/v1/slots/{slot['id']}/hold", "/v1/slots/{id}/hold")
        if not held or "id" not in held:
            return
        if random.random() < 0.7:
            booked = self.call(
                "POST",
                "/v1/appointments/book",
                "/v1/appointments/book (hold)",
                json={"hold_id": held["id"], "reason": "load test"},
            )
            if booked and booked.get("status") == "booked":
                self.booked.append(booked["id"])
        else:
            self.call("DELETE", f"/v1/holds/{held['id']}", "/v1/holds/{id}")

    @task(1)
    def wait_in_line(self) -> None:
        """A fully booked doctor: wait for a slot on a day; some change their minds."""
        day = (datetime.now(UTC) + timedelta(days=random.randint(1, 6))).date()
        entry = self.call(
            "POST",
            f"/v1/doctors/{self._doctor()}/waitlist",
            "/v1/doctors/{id}/waitlist",
            json={"date": day.isoformat()},
        )
        self.call("GET", "/v1/waitlist", "/v1/waitlist")
        if entry and "id" in entry and random.random() < 0.3:
            self.call("DELETE", f"/v1/waitlist/{entry['id']}", "/v1/waitlist/{id}")

    @task(8)
    def my_appointments(self) -> None:
        self.call("GET", "/v1/appointments", "/v1/appointments")

    @task(1)
    def cancel(self) -> None:
        if self.booked:
            appointment = self.booked.pop(random.randrange(len(self.booked)))
            self.call(
                "POST", f"/v1/appointments/{appointment}/cancel", "/v1/appointments/{id}/cancel"
            )

    @task(2)
    def prescriptions(self) -> None:
        self.call("GET", "/v1/patients/me/prescriptions", "/v1/patients/me/prescriptions")


class Doctor(_Signed):
    weight = 12
    wait_time = between(1.0 * PACE, 4.0 * PACE)

    def on_start(self) -> None:
        self.email = doctor_email(random.randrange(DOCTORS))
        super().on_start()

    @task(5)
    def schedule(self) -> None:
        self.call("GET", "/v1/appointments", "/v1/appointments", params={"status": "booked"})

    @task(1)
    def publish(self) -> None:
        day = (datetime.now(UTC) + timedelta(days=random.randint(20, 80))).date()
        start = datetime(day.year, day.month, day.day, random.randint(1, 12), tzinfo=UTC)
        self.call(
            "POST",
            "/v1/doctors/me/slots",
            "/v1/doctors/me/slots",
            json={
                "slots": [
                    {
                        "starts_at": start.isoformat(),
                        "ends_at": (start + timedelta(minutes=30)).isoformat(),
                    }
                ]
            },
        )

    @task(2)
    def consult(self) -> None:
        page = self.call(
            "GET", "/v1/appointments", "/v1/appointments", params={"status": "booked", "limit": 5}
        )
        if not page or not page["items"]:
            return
        appointment = random.choice(page["items"])
        started = self.call(
            "POST",
            f"/v1/appointments/{appointment['id']}/consultation",
            "/v1/appointments/{id}/consultation",
        )
        if not started or "id" not in started:
            return
        self.call(
            "POST",
            f"/v1/consultations/{started['id']}/prescriptions",
            "/v1/consultations/{id}/prescriptions",
            json={
                "items": [
                    {
                        "medicine": "Paracetamol",
                        "dosage": "500 mg",
                        "frequency": "2/day",
                        "duration_days": 3,
                    }
                ]
            },
        )
        self.call(
            "POST",
            f"/v1/consultations/{started['id']}/complete",
            "/v1/consultations/{id}/complete",
            json={"notes": "load test visit"},
        )


class Admin(_Signed):
    weight = 3
    wait_time = between(2.0 * PACE, 5.0 * PACE)

    def on_start(self) -> None:
        self.email = admin_email(random.randrange(SCALE_ADMINS))
        super().on_start()

    @task
    def audit(self) -> None:
        since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        self.call(
            "GET",
            "/v1/admin/audit-logs",
            "/v1/admin/audit-logs",
            params={"from": since, "action": "appointment.booked"},
        )
