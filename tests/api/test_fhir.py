"""The FHIR R4 facade on a real API: a realistic flow from finding a practitioner to the
audit trail of the visit, the access rules, the errors, and every resource and Bundle
checked against the FHIR models of ``fhir.resources`` (its R4B package: the R4 line
with pydantic 2; the resources served here are the same in R4 and R4B)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from fhir.resources.R4B import get_fhir_model_class

from tests.factories import book, make_admin, make_doctor, make_slots
from tests.helpers import bearer, register

FHIR = "/fhir/R4"
ITEMS = [
    {"medicine": "Amoxicillin", "dosage": "500 mg", "frequency": "3/day", "duration_days": 5},
    {
        "medicine": "Paracetamol",
        "dosage": "650 mg",
        "frequency": "when needed",
        "duration_days": 3,
        "instructions": "at most 4 a day",
    },
]


def valid(body: dict[str, Any]) -> dict[str, Any]:
    """The resource (a Bundle with every entry) as FHIR accepts it; the parsed model
    must give back what was served."""
    model = get_fhir_model_class(body["resourceType"]).model_validate(body)
    assert model.model_dump(mode="json", exclude_none=True)["resourceType"] == body["resourceType"]
    return body


def fhir(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    return valid(response.json())


def outcome(response: httpx.Response, status: int, code: str) -> str:
    body = fhir(response, status)
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == code
    diagnostics: str = body["issue"][0]["diagnostics"]
    return diagnostics


def entries(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "searchset")
    found = [e["resource"] for e in bundle["entry"]]
    assert all(r["resourceType"] == kind for r in found)
    for entry in bundle["entry"]:
        assert entry["fullUrl"].endswith(f"{FHIR}/{kind}/{entry['resource']['id']}")
    return found


def link(bundle: dict[str, Any], relation: str) -> str | None:
    for found in bundle["link"]:
        if found["relation"] == relation:
            url = urlsplit(found["url"])
            return f"{url.path}?{url.query}"
    return None


async def test_a_visit_read_through_fhir_from_search_to_audit_trail(
    client: httpx.AsyncClient, database_url: str
) -> None:
    specialty = f"fhir {uuid.uuid4().hex[:8]}"
    doctor = await make_doctor(client, specialty=specialty)
    doctor_id = doctor["id"]

    # Find the practitioner by specialty, then read them (with a validator).
    roles = fhir(await client.get(f"{FHIR}/PractitionerRole", params={"specialty": specialty}))
    [role] = entries(roles, "PractitionerRole")
    assert roles["total"] == 1
    assert role["practitioner"]["reference"] == f"Practitioner/{doctor_id}"
    assert role["specialty"][0]["coding"][0]["code"] == specialty
    read = await client.get(f"{FHIR}/Practitioner/{doctor_id}")
    practitioner = fhir(read)
    assert practitioner["id"] == doctor_id
    assert read.headers["last-modified"]
    again = await client.get(
        f"{FHIR}/Practitioner/{doctor_id}", headers={"If-None-Match": read.headers["etag"]}
    )
    assert again.status_code == 304
    [schedule] = entries(
        fhir(await client.get(f"{FHIR}/Schedule", params={"actor": f"Practitioner/{doctor_id}"})),
        "Schedule",
    )
    assert schedule["id"] == doctor_id

    # Free slots in a window, one page at a time.
    first = (datetime.now().astimezone() + timedelta(days=4)).replace(microsecond=0)
    slots = await make_slots(client, doctor, count=4, start=first)
    window: list[tuple[str, Any]] = [
        ("schedule", f"Schedule/{doctor_id}"),
        ("status", "free"),
        ("start", f"ge{slots[0]['starts_at']}"),
        ("start", f"lt{slots[3]['starts_at']}"),
        ("_count", "2"),
    ]
    page = fhir(await client.get(f"{FHIR}/Slot", params=window))
    found = entries(page, "Slot")
    assert [s["id"] for s in found] == [slots[0]["id"], slots[1]["id"]]
    assert "total" not in page  # not known without counting
    rest = fhir(await client.get(link(page, "next") or "missing next link"))
    assert [s["id"] for s in entries(rest, "Slot")] == [slots[2]["id"]]
    assert link(rest, "next") is None

    # Book through /v1; the slot turns busy, a held one busy-tentative (the doctor sees both).
    # The free ones read before (and cached) are gone from the same search at once.
    free = fhir(await client.get(f"{FHIR}/Slot", params=window[:1]))
    assert [s["id"] for s in entries(free, "Slot")] == [s["id"] for s in slots]
    patient = await register(client)
    booked = await book(client, bearer(patient), slots[0]["id"])
    assert booked.status_code == 201, booked.text
    appointment_id = booked.json()["id"]
    other = await register(client)
    assert (await client.post(f"/v1/slots/{slots[1]['id']}/hold", headers=bearer(other))).is_success
    mine = fhir(
        await client.get(
            f"{FHIR}/Slot",
            params=[*window[:1], ("start", f"lt{slots[2]['starts_at']}")],
            headers=doctor["headers"],
        )
    )
    assert [s["status"] for s in entries(mine, "Slot")] == ["busy", "busy-tentative"]
    free = fhir(await client.get(f"{FHIR}/Slot", params=window[:1]))
    assert [s["id"] for s in entries(free, "Slot")] == [slots[2]["id"], slots[3]["id"]]
    refused = await client.get(
        f"{FHIR}/Slot", params=[*window[:1], ("status", "busy")], headers=bearer(patient)
    )
    outcome(refused, 403, "forbidden")

    # The appointment, as its patient and as its doctor; nobody else finds it.
    for who in (bearer(patient), doctor["headers"]):
        appointment = fhir(await client.get(f"{FHIR}/Appointment/{appointment_id}", headers=who))
        assert appointment["status"] == "booked"
        actors = {p["actor"]["reference"] for p in appointment["participant"]}
        assert actors == {f"Patient/{patient['user']['id']}", f"Practitioner/{doctor_id}"}
        assert appointment["slot"] == [{"reference": f"Slot/{slots[0]['id']}", "type": "Slot"}]
    stranger = await client.get(f"{FHIR}/Appointment/{appointment_id}", headers=bearer(other))
    outcome(stranger, 404, "not-found")
    listed = fhir(
        await client.get(
            f"{FHIR}/Appointment",
            params={"patient": f"Patient/{patient['user']['id']}", "status": "booked"},
            headers=bearer(patient),
        )
    )
    assert [a["id"] for a in entries(listed, "Appointment")] == [appointment_id]
    theirs = await client.get(
        f"{FHIR}/Appointment",
        params={"patient": f"Patient/{patient['user']['id']}"},
        headers=bearer(other),
    )
    assert entries(fhir(theirs), "Appointment") == []
    by_doctor = await client.get(
        f"{FHIR}/Appointment",
        params={"practitioner": f"Practitioner/{doctor_id}", "date": f"ge{first.date()}"},
        headers=doctor["headers"],
    )
    assert [a["id"] for a in entries(fhir(by_doctor), "Appointment")] == [appointment_id]

    # The visit: an Encounter and one MedicationRequest per prescription item.
    consultation = await client.post(
        f"/v1/appointments/{appointment_id}/consultation", headers=doctor["headers"]
    )
    consultation_id = consultation.json()["id"]
    issued = await client.post(
        f"/v1/consultations/{consultation_id}/prescriptions",
        json={"items": ITEMS, "notes": "after food"},
        headers=doctor["headers"],
    )
    prescription_id = issued.json()["id"]
    await client.post(
        f"/v1/consultations/{consultation_id}/complete",
        json={"notes": "Sinusitis; rest.", "diagnosis": "Acute sinusitis"},
        headers=doctor["headers"],
    )
    encounter = fhir(
        await client.get(f"{FHIR}/Encounter/{consultation_id}", headers=bearer(patient))
    )
    assert encounter["status"] == "finished"
    assert encounter["appointment"][0]["reference"] == f"Appointment/{appointment_id}"
    assert encounter["contained"][0]["code"]["text"] == "Acute sinusitis"
    for n, item in enumerate(ITEMS, 1):
        request = fhir(
            await client.get(
                f"{FHIR}/MedicationRequest/{prescription_id}-{n}", headers=bearer(patient)
            )
        )
        assert request["medicationCodeableConcept"]["text"] == item["medicine"]
        assert request["encounter"]["reference"] == f"Encounter/{consultation_id}"
        assert request["groupIdentifier"]["value"] == prescription_id
    outcome(
        await client.get(f"{FHIR}/MedicationRequest/{prescription_id}-3", headers=bearer(patient)),
        404,
        "not-found",
    )
    outcome(
        await client.get(f"{FHIR}/MedicationRequest/{prescription_id}-1", headers=bearer(other)),
        404,
        "not-found",
    )
    for who in (bearer(patient), doctor["headers"]):
        requests = fhir(
            await client.get(
                f"{FHIR}/MedicationRequest",
                params={"patient": f"Patient/{patient['user']['id']}", "_count": "1"},
                headers=who,
            )
        )
        [newest] = entries(requests, "MedicationRequest")
        following = fhir(await client.get(link(requests, "next") or "", headers=who))
        [oldest] = entries(following, "MedicationRequest")
        assert {newest["id"], oldest["id"]} == {f"{prescription_id}-1", f"{prescription_id}-2"}
    nothing = await client.get(
        f"{FHIR}/MedicationRequest",
        params={"patient": f"Patient/{patient['user']['id']}"},
        headers=bearer(other),
    )
    assert entries(fhir(nothing), "MedicationRequest") == []

    # The audit trail of the visit, for admins only.
    admin = await make_admin(database_url)
    trail = fhir(
        await client.get(
            f"{FHIR}/AuditEvent",
            params={"entity": f"Appointment/{appointment_id}", "_count": "100"},
            headers=admin,
        )
    )
    events = entries(trail, "AuditEvent")
    actions = {e["subtype"][0]["code"] for e in events}
    assert {"appointment.booked", "appointment.viewed"} <= actions
    assert all(
        e["entity"][0]["what"]["reference"] == f"Appointment/{appointment_id}" for e in events
    )
    by_agent = fhir(
        await client.get(
            f"{FHIR}/AuditEvent",
            params={"agent": f"Practitioner/{doctor_id}", "entity": f"Encounter/{consultation_id}"},
            headers=admin,
        )
    )
    assert {e["subtype"][0]["code"] for e in entries(by_agent, "AuditEvent")} == {
        "consultation.started",
        "consultation.completed",
    }
    for who in (bearer(patient), doctor["headers"]):
        outcome(await client.get(f"{FHIR}/AuditEvent", headers=who), 403, "forbidden")

    # An admin names whose records: anyone's, but someone's.
    patient_ref = {"patient": f"Patient/{patient['user']['id']}"}
    for kind, count in (("Appointment", 1), ("MedicationRequest", 2)):
        found = fhir(await client.get(f"{FHIR}/{kind}", params=patient_ref, headers=admin))
        assert len(entries(found, kind)) == count
    unnamed = await client.get(f"{FHIR}/MedicationRequest", headers=admin)
    assert "name the patient" in outcome(unnamed, 422, "processing")


async def test_the_capability_statement_lists_exactly_what_is_routed(
    client: httpx.AsyncClient,
) -> None:
    statement = fhir(await client.get(f"{FHIR}/metadata"))
    assert statement["fhirVersion"] == "4.0.1"
    served = {
        r["type"]: {i["code"] for i in r["interaction"]} for r in statement["rest"][0]["resource"]
    }
    assert served == {
        "Appointment": {"read", "search-type"},
        "AuditEvent": {"search-type"},
        "Encounter": {"read"},
        "MedicationRequest": {"read", "search-type"},
        "Practitioner": {"read"},
        "PractitionerRole": {"read", "search-type"},
        "Schedule": {"read", "search-type"},
        "Slot": {"search-type"},
    }
    # Each interaction listed answers (perhaps with its own refusal), and none other does.
    for kind, interactions in served.items():
        search = await client.get(f"{FHIR}/{kind}", params={"_count": "1"})
        assert (search.status_code != 404) == ("search-type" in interactions), kind
        read = await client.get(f"{FHIR}/{kind}/{uuid.uuid4()}")
        routed = read.status_code == 401 or outcome(read, 404, "not-found").startswith("no such")
        assert routed == ("read" in interactions), kind
    outcome(await client.get(f"{FHIR}/Patient/{uuid.uuid4()}"), 404, "not-found")


async def test_every_error_is_an_operation_outcome(client: httpx.AsyncClient) -> None:
    doctor = await make_doctor(client)
    schedule = f"Schedule/{doctor['id']}"
    cases = [
        (f"{FHIR}/Slot?schedule={schedule}&colour=red", 400, "invalid"),
        (f"{FHIR}/Slot?schedule={schedule}&start=sa2026-01-01", 400, "invalid"),
        (f"{FHIR}/Slot?schedule={schedule}&start=ge2026-13-01", 400, "invalid"),
        (f"{FHIR}/Slot?schedule={schedule}&start=yesterday", 400, "invalid"),
        (f"{FHIR}/Slot?schedule={schedule}&status:not=free", 400, "invalid"),
        (f"{FHIR}/Slot?schedule=Practitioner/{doctor['id']}", 400, "invalid"),
        (f"{FHIR}/Slot?schedule=Schedule/nope", 400, "invalid"),
        (f"{FHIR}/Slot?schedule={schedule}&_count=abc", 400, "invalid"),
        (f"{FHIR}/Slot?schedule={schedule}&_count=²", 400, "invalid"),
        (f"{FHIR}/Slot?schedule={schedule}&_format=xml", 400, "invalid"),
        (f"{FHIR}/Slot", 400, "invalid"),
        (f"{FHIR}/Slot?schedule={schedule}&_cursor=not-a-cursor", 422, "processing"),
        (f"{FHIR}/Slot?schedule=Schedule/{uuid.uuid4()}", 404, "not-found"),
        (f"{FHIR}/Practitioner/not-an-id", 404, "not-found"),
        (f"{FHIR}/Practitioner/{uuid.UUID(doctor['id']).hex}", 404, "not-found"),
        (f"{FHIR}/Practitioner/{uuid.uuid4()}", 404, "not-found"),
        (f"{FHIR}/Appointment/{uuid.uuid4()}", 401, "login"),
        (f"{FHIR}/Appointment", 401, "login"),
        (f"{FHIR}/MedicationRequest/{uuid.uuid4()}-0", 401, "login"),
        (f"{FHIR}/AuditEvent", 401, "login"),
        (f"{FHIR}/Nothing", 404, "not-found"),
    ]
    for path, status, code in cases:
        outcome(await client.get(path), status, code)
    unauthenticated = await client.get(f"{FHIR}/Appointment")
    assert unauthenticated.headers["www-authenticate"].startswith("Bearer")
    outcome(await client.post(f"{FHIR}/Slot", json={}), 405, "not-supported")
    patient = await register(client)
    for path in (
        f"{FHIR}/MedicationRequest/x-1",
        f"{FHIR}/MedicationRequest/{uuid.uuid4()}-01",
        f"{FHIR}/MedicationRequest/{uuid.uuid4()}-²",
    ):
        outcome(await client.get(path, headers=bearer(patient)), 404, "not-found")
