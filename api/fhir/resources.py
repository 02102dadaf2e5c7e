"""The platform's records as FHIR R4 resources (plain dicts, ready for orjson).

The inputs are the records the core serves to ``/v1`` (ids and instants as strings, or
as the UUIDs and datetimes the JSON encoder writes the same way). A
doctor is a ``Practitioner``, their one ``PractitionerRole`` and their one ``Schedule``,
all three under the doctor's id; a consultation is an ``Encounter``; each item of a
prescription is a ``MedicationRequest`` named ``<prescription id>-<item number>``.
"""

from __future__ import annotations

import uuid
from typing import Any

Resource = dict[str, Any]

SYSTEM = "https://amrutam.io/fhir"
SPECIALTY_SYSTEM = f"{SYSTEM}/CodeSystem/specialty"
AUDIT_ACTION_SYSTEM = f"{SYSTEM}/CodeSystem/audit-action"
PRESCRIPTION_SYSTEM = f"{SYSTEM}/prescription"
UCUM = "http://unitsofmeasure.org"

SLOT_STATUS = {
    "open": "free",
    "held": "busy-tentative",
    "booked": "busy",
    "blocked": "busy-unavailable",
}
APPOINTMENT_STATUS = {
    "booked": "booked",
    "cancelled": "cancelled",
    "completed": "fulfilled",
    "no_show": "noshow",
}
ENCOUNTER_STATUS = {"started": "in-progress", "completed": "finished"}
# The audit trail's entity types and the resources they name.
ENTITY_TYPES = {
    "appointment": "Appointment",
    "consultation": "Encounter",
    "doctor": "Practitioner",
    "patient": "Patient",
    "slot": "Slot",
}


def ref(kind: str, id_: object, display: str | None = None) -> dict[str, str]:
    found = {"reference": f"{kind}/{id_}", "type": kind}
    if display:
        found["display"] = display
    return found


def specialty(code: str) -> dict[str, Any]:
    return {"coding": [{"system": SPECIALTY_SYSTEM, "code": code}], "text": code}


def _meta(updated: str | None) -> dict[str, Any]:
    return {"meta": {"lastUpdated": updated}} if updated else {}


def practitioner(profile: dict[str, Any]) -> Resource:
    found: Resource = {
        "resourceType": "Practitioner",
        "id": profile["id"],
        **_meta(profile.get("updated_at")),
        "active": True,
        "name": [{"text": profile["full_name"]}],
        "communication": [{"text": language} for language in profile.get("languages") or []],
    }
    if profile.get("city"):
        found["address"] = [{"city": profile["city"]}]
    return found


def practitioner_role(profile: dict[str, Any]) -> Resource:
    return {
        "resourceType": "PractitionerRole",
        "id": profile["id"],
        **_meta(profile.get("updated_at")),
        "active": True,
        "practitioner": ref("Practitioner", profile["id"], profile["full_name"]),
        "specialty": [specialty(profile["specialty"])],
    }


def schedule(profile: dict[str, Any]) -> Resource:
    return {
        "resourceType": "Schedule",
        "id": profile["id"],
        "active": True,
        "specialty": [specialty(profile["specialty"])],
        "actor": [ref("Practitioner", profile["id"], profile["full_name"])],
        "comment": f"Consultation slots in the time zone {profile['timezone']}",
    }


def slot(row: dict[str, Any]) -> Resource:
    return {
        "resourceType": "Slot",
        "id": row["id"],
        "schedule": ref("Schedule", row["doctor_id"]),
        "status": SLOT_STATUS[row["status"]],
        "start": row["starts_at"],
        "end": row["ends_at"],
    }


def appointment(row: dict[str, Any]) -> Resource:
    found: Resource = {
        "resourceType": "Appointment",
        "id": row["id"],
        "status": APPOINTMENT_STATUS[row["status"]],
        "start": row["starts_at"],
        "end": row["ends_at"],
        "created": row["created_at"],
        "slot": [ref("Slot", row["slot_id"])],
        "participant": [
            {
                "actor": ref("Patient", row["patient_id"]),
                "required": "required",
                "status": "accepted",
            },
            {
                "actor": ref("Practitioner", row["doctor_id"]),
                "required": "required",
                "status": "accepted",
            },
        ],
    }
    if row.get("reason"):
        found["reasonCode"] = [{"text": row["reason"]}]
    return found


def encounter(row: dict[str, Any]) -> Resource:
    updated = row.get("completed_at") or row["started_at"]
    period = {"start": row["started_at"]}
    if row.get("completed_at"):
        period["end"] = row["completed_at"]
    found: Resource = {
        "resourceType": "Encounter",
        "id": row["id"],
        **_meta(updated),
        "status": ENCOUNTER_STATUS[row["status"]],
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "VR",
            "display": "virtual",
        },
        "subject": ref("Patient", row["patient_id"]),
        "participant": [{"individual": ref("Practitioner", row["doctor_id"])}],
        "appointment": [ref("Appointment", row["appointment_id"])],
        "period": period,
    }
    if row.get("diagnosis"):  # free text: a contained Condition carries it
        found["contained"] = [
            {
                "resourceType": "Condition",
                "id": "diagnosis",
                "code": {"text": row["diagnosis"]},
                "subject": ref("Patient", row["patient_id"]),
            }
        ]
        found["diagnosis"] = [{"condition": {"reference": "#diagnosis"}}]
    return found


def our_id(text: str) -> uuid.UUID | None:
    """The UUID a resource id names, in its one canonical spelling (None: not ours)."""
    try:
        found = uuid.UUID(text)
    except ValueError:
        return None
    return found if str(found) == text else None


def medication_request_id(prescription_id: object, n: int) -> str:
    return f"{prescription_id}-{n}"


def parse_medication_request_id(text: str) -> tuple[uuid.UUID, int] | None:
    """The prescription and item number a MedicationRequest id names (None: no such id)."""
    head, _, tail = text.rpartition("-")
    prescription_id = our_id(head)
    # ASCII digits only (str.isdigit() also takes "²", which int() refuses), and no
    # leading zero: one spelling per item, numbered from 1.
    digits = tail.isascii() and tail.isdigit() and not tail.startswith("0")
    return (prescription_id, int(tail)) if prescription_id is not None and digits else None


def medication_request(prescription: dict[str, Any], item: dict[str, Any], n: int) -> Resource:
    days = item["duration_days"]
    dosage: dict[str, Any] = {
        "sequence": 1,
        "text": f"{item['dosage']}, {item['frequency']}, for {days} days",
        "timing": {"repeat": {"boundsDuration": _days(days)}},
    }
    if item.get("instructions"):
        dosage["patientInstruction"] = item["instructions"]
    found: Resource = {
        "resourceType": "MedicationRequest",
        "id": medication_request_id(prescription["id"], n),
        **_meta(prescription["issued_at"]),
        "status": "active",
        "intent": "order",
        "groupIdentifier": {"system": PRESCRIPTION_SYSTEM, "value": str(prescription["id"])},
        "medicationCodeableConcept": {"text": item["medicine"]},
        "subject": ref("Patient", prescription["patient_id"]),
        "encounter": ref("Encounter", prescription["consultation_id"]),
        "authoredOn": prescription["issued_at"],
        "requester": ref("Practitioner", prescription["doctor_id"]),
        "dosageInstruction": [dosage],
        "dispenseRequest": {"expectedSupplyDuration": _days(days)},
    }
    if prescription.get("notes"):
        found["note"] = [{"text": prescription["notes"]}]
    return found


def _days(days: int) -> dict[str, Any]:
    return {"value": days, "unit": "days", "system": UCUM, "code": "d"}


def _audit_action(action: str) -> str:
    """The FHIR action code (Create, Read, Update, Delete, Execute) of our action."""
    verb = action.rsplit(".", 1)[-1]
    if verb in ("viewed", "view_denied", "listed"):
        return "R"
    if verb in ("created", "booked", "issued", "registered", "started", "held", "joined"):
        return "C"
    if verb in ("deleted", "purged"):
        return "D"
    if verb.endswith("updated") or verb in ("cancelled", "rescheduled", "completed"):
        return "U"
    return "E"


def _agent_who(row: dict[str, Any]) -> dict[str, Any]:
    role, actor = row.get("actor_role"), row.get("actor_id")
    if actor is None:
        return {"display": role or "anonymous"}
    if role in ("doctor", "patient"):
        return ref("Practitioner" if role == "doctor" else "Patient", actor)
    return {"identifier": {"system": f"{SYSTEM}/user", "value": actor}}


def audit_event(row: dict[str, Any]) -> Resource:
    agent: dict[str, Any] = {"who": _agent_who(row), "requestor": True}
    if row.get("actor_role"):
        agent["role"] = [{"text": row["actor_role"]}]
    if row.get("ip"):
        agent["network"] = {"address": row["ip"], "type": "2"}
    denied = row["action"].endswith("denied") or row["action"].endswith("failed")
    found: Resource = {
        "resourceType": "AuditEvent",
        "id": row["id"],
        **_meta(row["occurred_at"]),
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [{"system": AUDIT_ACTION_SYSTEM, "code": row["action"]}],
        "action": _audit_action(row["action"]),
        "recorded": row["occurred_at"],
        "outcome": "4" if denied else "0",
        "agent": [agent],
        "source": {"observer": {"display": "amrutam-api"}},
    }
    if row.get("entity_type") and row.get("entity_id"):
        found["entity"] = [{"what": _entity(row["entity_type"], row["entity_id"])}]
    if row.get("request_id"):
        found["source"]["site"] = f"request {row['request_id']}"
    return found


def _entity(kind: str, id_: str) -> dict[str, Any]:
    if kind in ENTITY_TYPES:
        return ref(ENTITY_TYPES[kind], id_)
    return {"identifier": {"system": f"{SYSTEM}/{kind}", "value": id_}}
