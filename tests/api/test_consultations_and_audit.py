"""The visit's lifecycle and access rules, and the audit row each act leaves."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import jwt

from amrutam.audit.actions import SYSTEM_ACTIONS, Action
from tests.factories import book, make_admin, make_doctor, make_slots, pg_dsn
from tests.helpers import PASSWORD, assert_problem, bearer, register, totp_code

ITEMS = [{"medicine": "Amoxicillin", "dosage": "500 mg", "frequency": "3/day", "duration_days": 5}]


async def _audit_rows(database_url: str, request_id: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT action, actor_id, actor_role, entity_type, entity_id, ip, detail "
            "FROM audit_logs WHERE detail->>'client_request_id' = $1",
            request_id,
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


class Traced:
    """Sends each request with a fresh X-Request-ID and finds its audit rows."""

    def __init__(self, http: httpx.AsyncClient, database_url: str) -> None:
        self.http, self.database_url = http, database_url
        self.seen: set[str] = set()

    async def __call__(
        self, method: str, path: str, expect: str | None, **kwargs: Any
    ) -> httpx.Response:
        rid = uuid.uuid4().hex
        headers = {**kwargs.pop("headers", {}), "X-Request-ID": rid}
        response = await self.http.request(method, path, headers=headers, **kwargs)
        rows = await _audit_rows(self.database_url, rid)
        assert [r["action"] for r in rows] == ([expect] if expect else []), (path, rows)
        self.seen.update([expect] if expect else [])
        if rows:
            assert rows[0]["ip"] == self.http.headers["x-forwarded-for"]
        return response


async def test_visit_lifecycle_with_one_audit_row_per_act(
    client: httpx.AsyncClient, database_url: str
) -> None:
    traced = Traced(client, database_url)
    email = f"visit-{uuid.uuid4().hex[:8]}@example.com"
    registered = await traced(
        "POST",
        "/v1/auth/register",
        "auth.register",
        json={"email": email, "password": PASSWORD, "full_name": "V", "role": "patient"},
    )
    patient = registered.json()
    await traced(
        "POST",
        "/v1/auth/login",
        "auth.login_failed",
        json={"email": email, "password": "wrong-password"},
    )
    await traced(
        "POST", "/v1/auth/login", "auth.login", json={"email": email, "password": PASSWORD}
    )
    refreshed = await traced(
        "POST", "/v1/auth/refresh", "auth.refresh", json={"refresh_token": patient["refresh_token"]}
    )
    patient = {**patient, **refreshed.json()}

    doctor = await make_doctor(client)
    await traced(
        "PUT",
        "/v1/doctors/me/profile",
        "doctor.profile_updated",
        headers=doctor["headers"],
        json={
            "specialty": "ENT",
            "languages": ["english"],
            "consultation_fee": 100,
            "experience_years": 3,
            "timezone": "Asia/Kolkata",
        },
    )
    slots = await make_slots(client, doctor, count=3)
    start = datetime.fromisoformat(slots[-1]["ends_at"])
    created = await traced(
        "POST",
        "/v1/doctors/me/slots",
        "slot.created",
        headers=doctor["headers"],
        json={
            "slots": [
                {
                    "starts_at": start.isoformat(),
                    "ends_at": (start + timedelta(minutes=30)).isoformat(),
                }
            ]
        },
    )
    assert created.status_code == 201, created.text
    throwaway = await register(client)
    spare = created.json()["items"][0]["id"]
    spare_booking = (await book(client, bearer(throwaway), spare)).json()
    await traced(
        "POST",
        f"/v1/appointments/{spare_booking['id']}/cancel",
        "appointment.cancelled",
        headers=bearer(throwaway),
    )
    tomorrow = (datetime.fromisoformat(slots[0]["starts_at"]) + timedelta(days=1)).date()
    await traced(
        "POST",
        f"/v1/doctors/{doctor['id']}/waitlist",
        "waitlist.joined",
        headers=bearer(throwaway),
        json={"date": tomorrow.isoformat()},
    )
    held = await traced("POST", f"/v1/slots/{spare}/hold", "slot.held", headers=bearer(throwaway))
    await traced(
        "DELETE", f"/v1/holds/{held.json()['id']}", "slot.released", headers=bearer(throwaway)
    )
    await traced(
        "DELETE",
        f"/v1/doctors/me/slots/{slots[2]['id']}",
        "slot.deleted",
        headers=doctor["headers"],
    )
    booked = await traced(
        "POST",
        "/v1/appointments/book",
        "appointment.booked",
        json={"slot_id": slots[0]["id"]},
        headers={**bearer(patient), "Idempotency-Key": uuid.uuid4().hex},
    )
    appointment = booked.json()
    # A refused act leaves no row: the slot is taken.
    other = await register(client)
    refused = await traced(
        "POST",
        "/v1/appointments/book",
        None,
        json={"slot_id": slots[0]["id"]},
        headers={**bearer(other), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert refused.status_code == 409
    moved = await traced(
        "POST",
        f"/v1/appointments/{appointment['id']}/reschedule",
        "appointment.rescheduled",
        json={"slot_id": slots[1]["id"]},
        headers=bearer(patient),
    )
    assert moved.status_code == 200

    path = f"/v1/appointments/{appointment['id']}/consultation"
    assert_problem(await client.post(path, headers=bearer(patient)), 403)
    stranger = await make_doctor(client)
    assert_problem(await client.post(path, headers=stranger["headers"]), 404)
    started = await traced("POST", path, "consultation.started", headers=doctor["headers"])
    assert started.status_code == 201
    consultation = started.json()
    assert consultation["status"] == "started"
    assert_problem(await client.post(path, headers=doctor["headers"]), 409)

    issued = await traced(
        "POST",
        f"/v1/consultations/{consultation['id']}/prescriptions",
        "prescription.issued",
        json={"items": ITEMS, "notes": "after food"},
        headers=doctor["headers"],
    )
    assert issued.status_code == 201
    prescription = issued.json()
    assert prescription["items"][0]["medicine"] == "Amoxicillin"
    assert_problem(
        await client.post(
            f"/v1/consultations/{consultation['id']}/prescriptions",
            json={"items": [{"medicine": "X"}]},
            headers=doctor["headers"],
        ),
        422,
    )
    assert_problem(
        await client.post(
            f"/v1/consultations/{consultation['id']}/prescriptions",
            json={"items": ITEMS},
            headers=stranger["headers"],
        ),
        404,
    )

    done = await traced(
        "POST",
        f"/v1/consultations/{consultation['id']}/complete",
        "consultation.completed",
        json={"notes": "Sinusitis; rest.", "diagnosis": "J01"},
        headers=doctor["headers"],
    )
    assert done.json()["status"] == "completed"
    assert_problem(
        await client.post(
            f"/v1/consultations/{consultation['id']}/complete",
            json={"notes": "again"},
            headers=doctor["headers"],
        ),
        409,
    )
    after = await traced(
        "GET",
        f"/v1/appointments/{appointment['id']}",
        "appointment.viewed",
        headers=bearer(patient),
    )
    assert after.json()["status"] == "completed"

    seen = await traced(
        "GET",
        f"/v1/consultations/{consultation['id']}",
        "consultation.viewed",
        headers=bearer(patient),
    )
    assert seen.json()["notes"] == "Sinusitis; rest."
    await traced(
        "GET",
        f"/v1/prescriptions/{prescription['id']}",
        "prescription.viewed",
        headers=bearer(patient),
    )
    mine = await traced(
        "GET", "/v1/patients/me/prescriptions", "prescription.viewed", headers=bearer(patient)
    )
    assert [p["id"] for p in mine.json()["items"]] == [prescription["id"]]
    for who in (bearer(other), stranger["headers"]):  # refused, and recorded as such
        path = f"/v1/consultations/{consultation['id']}"
        assert_problem(await traced("GET", path, "consultation.view_denied", headers=who), 404)
        path = f"/v1/prescriptions/{prescription['id']}"
        assert_problem(await traced("GET", path, "prescription.view_denied", headers=who), 404)

    # A second factor and a second session, each step with its row.
    mine = bearer(patient)
    setup = await traced("POST", "/v1/auth/mfa/setup", "auth.mfa_setup", headers=mine)
    secret = setup.json()["secret"]
    wrong, right = {"code": "000000"}, {"code": totp_code(secret)}
    await traced("POST", "/v1/auth/mfa/confirm", "auth.mfa_failed", headers=mine, json=wrong)
    enabled = await traced(
        "POST", "/v1/auth/mfa/confirm", "auth.mfa_enabled", headers=mine, json=right
    )
    credentials = {"email": email, "password": PASSWORD}
    challenge = await traced("POST", "/v1/auth/login", "auth.mfa_challenged", json=credentials)
    code = {"mfa_token": challenge.json()["mfa_token"], "code": totp_code(secret, 1)}
    phone = await traced("POST", "/v1/auth/mfa/verify", "auth.login", json=code)
    phone_session = jwt.decode(phone.json()["access_token"], options={"verify_signature": False})
    path = f"/v1/auth/sessions/{phone_session['fam']}"
    await traced("DELETE", path, "auth.session_revoked", headers=mine)
    recovery = {"code": enabled.json()["recovery_codes"][0]}
    await traced("DELETE", "/v1/auth/mfa", "auth.mfa_disabled", headers=mine, json=recovery)
    change = {"current_password": PASSWORD, "new_password": "violet kettle orbit 42"}
    await traced("POST", "/v1/auth/password", "auth.password_changed", headers=mine, json=change)
    await traced("POST", "/v1/auth/logout", "auth.logout", headers=mine)

    # No clinical content in any audit detail.
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        details = await conn.fetch("SELECT detail::text AS d FROM audit_logs")
    finally:
        await conn.close()
    assert not [r for r in details if "Sinusitis" in r["d"] or "Amoxicillin" in r["d"]]

    # Every audited act was traced above, except the platform's own, the admin's (the
    # next tests) and the refresh-reuse alarm (test_auth.py): a new Action needs a trace.
    untraced = {Action.AUTH_REFRESH_REUSE, Action.AUDIT_VIEWED, Action.AUDIT_VERIFIED}
    assert traced.seen == {str(a) for a in Action} - SYSTEM_ACTIONS - untraced


async def test_cancelled_appointment_cannot_start(client: httpx.AsyncClient) -> None:
    doctor = await make_doctor(client)
    slot = (await make_slots(client, doctor))[0]
    patient = await register(client)
    appointment = (await book(client, bearer(patient), slot["id"])).json()
    await client.post(f"/v1/appointments/{appointment['id']}/cancel", headers=bearer(patient))
    assert_problem(
        await client.post(
            f"/v1/appointments/{appointment['id']}/consultation", headers=doctor["headers"]
        ),
        409,
    )


async def test_admin_audit_queries_and_verify(client: httpx.AsyncClient, database_url: str) -> None:
    admin = await make_admin(database_url)
    patient = await register(client)
    doctor = await make_doctor(client)
    slot = (await make_slots(client, doctor))[0]
    booked = (await book(client, bearer(patient), slot["id"])).json()

    assert_problem(await client.get("/v1/admin/audit-logs", headers=bearer(patient)), 403)
    assert_problem(await client.get("/v1/admin/audit-logs"), 401)
    found = await client.get(
        "/v1/admin/audit-logs",
        params={"entity_type": "appointment", "entity_id": booked["id"]},
        headers=admin,
    )
    assert found.status_code == 200, found.text
    rows = found.json()["items"]
    assert [r["action"] for r in rows] == ["appointment.booked"]
    assert rows[0]["actor_id"] == patient["user"]["id"]
    assert rows[0]["detail"] == {"slot_id": slot["id"]}

    mine = await client.get(
        "/v1/admin/audit-logs",
        params={"actor_id": patient["user"]["id"], "limit": 1},
        headers=admin,
    )
    page = mine.json()
    assert len(page["items"]) == 1
    assert page["next_cursor"]
    older = await client.get(
        "/v1/admin/audit-logs",
        params={"actor_id": patient["user"]["id"], "cursor": page["next_cursor"]},
        headers=admin,
    )
    assert [r["action"] for r in page["items"] + older.json()["items"]] == [
        "appointment.booked",
        "auth.register",
    ]
    assert_problem(
        await client.get("/v1/admin/audit-logs", params={"from": "yesterday"}, headers=admin), 422
    )
    viewed = await client.get(
        "/v1/admin/audit-logs", params={"action": "audit.viewed", "limit": 1}, headers=admin
    )
    assert viewed.json()["items"][0]["action"] == "audit.viewed"

    verdict = await client.get("/v1/admin/audit-logs/verify", headers=admin)
    assert verdict.status_code == 200
    assert verdict.json()["ok"] is True
    assert verdict.json()["checked"] > 0
