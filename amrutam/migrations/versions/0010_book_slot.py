"""book_slot(): a booking in one database round trip.

The booking transaction was four round trips (BEGIN, lock and count, write, COMMIT);
as one function call it is one, and commits itself. The rules are the ones
``Scheduling.book`` applied in Python, in the same order; the function answers with an
``outcome`` that the service turns into its response or its refusal.

Each statement of a (volatile) PL/pgSQL function takes a fresh snapshot, so the
patient's bookings are counted after the advisory lock that serialises them: a booking
of theirs that committed while this one waited is counted.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SIGNATURE = "book_slot(uuid, uuid, boolean, uuid, text, text, integer, integer, audit_logs, uuid)"


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION book_slot(
            p_id uuid, p_slot uuid, p_by_hold boolean, p_patient uuid, p_reason text, p_key text,
            p_max_total integer, p_max_with_doctor integer, p_audit audit_logs, p_event uuid
        ) RETURNS TABLE (
            outcome text, id uuid, slot_id uuid, doctor_id uuid, patient_id uuid,
            starts_at timestamptz, ends_at timestamptz, status text, reason text,
            created_at timestamptz, took_offer boolean, held_by uuid, timezone text,
            total bigint, with_doctor bigint
        ) LANGUAGE plpgsql AS $$
        DECLARE
            v record;
        BEGIN
            -- An Idempotency-Key older than the contract's 24 hours is free again.
            UPDATE appointments a SET idempotency_key = NULL
            WHERE a.patient_id = p_patient AND a.idempotency_key = p_key
              AND a.created_at < now() - interval '24 hours';

            SELECT s.doctor_id, s.starts_at, s.ends_at, s.status, d.timezone INTO v
            FROM availability_slots s JOIN doctors d ON d.user_id = s.doctor_id
            WHERE s.id = p_slot FOR UPDATE OF s;
            IF NOT FOUND THEN
                outcome := 'no_slot'; RETURN NEXT; RETURN;
            END IF;

            IF v.status <> 'open' THEN  -- this request's own booking, committed before?
                SELECT a.id, a.slot_id, a.doctor_id, a.patient_id, a.starts_at, a.ends_at,
                    a.status, a.reason, a.created_at
                INTO id, slot_id, doctor_id, patient_id, starts_at, ends_at, status, reason,
                    created_at
                FROM appointments a
                WHERE a.patient_id = p_patient AND a.idempotency_key = p_key
                  AND a.slot_id = p_slot;
                outcome := CASE WHEN FOUND THEN 'replayed' ELSE 'not_open' END;
                RETURN NEXT; RETURN;
            END IF;

            SELECT h.patient_id INTO held_by FROM slot_holds h
            WHERE h.slot_id = p_slot AND h.ended_at IS NULL AND h.expires_at > now();
            IF held_by <> p_patient THEN
                outcome := 'held'; RETURN NEXT; RETURN;
            END IF;
            IF p_by_hold AND held_by IS NULL THEN
                outcome := 'hold_expired'; RETURN NEXT; RETURN;
            END IF;
            IF v.starts_at <= now() THEN
                outcome := 'started'; RETURN NEXT; RETURN;
            END IF;

            PERFORM pg_advisory_xact_lock(hashtextextended('booking:' || p_patient::text, 0));
            SELECT count(*), count(*) FILTER (WHERE a.doctor_id = v.doctor_id)
            INTO total, with_doctor
            FROM appointments a
            WHERE a.patient_id = p_patient AND a.status = 'booked' AND a.starts_at > now();
            IF total >= p_max_total THEN
                outcome := 'total'; RETURN NEXT; RETURN;
            END IF;
            IF with_doctor >= p_max_with_doctor THEN
                outcome := 'with_doctor'; RETURN NEXT; RETURN;
            END IF;

            INSERT INTO appointments AS a (id, slot_id, doctor_id, patient_id, starts_at,
                ends_at, reason, idempotency_key)
            VALUES (p_id, p_slot, v.doctor_id, p_patient, v.starts_at, v.ends_at, p_reason,
                p_key)
            RETURNING a.id, a.slot_id, a.doctor_id, a.patient_id, a.starts_at, a.ends_at,
                a.status, a.reason, a.created_at
            INTO id, slot_id, doctor_id, patient_id, starts_at, ends_at, status, reason,
                created_at;
            UPDATE availability_slots s SET status = 'booked' WHERE s.id = p_slot;
            UPDATE slot_holds h SET ended_at = now(),
                ended_as = CASE WHEN h.patient_id = p_patient THEN 'booked' ELSE 'expired' END
            WHERE h.slot_id = p_slot AND h.ended_at IS NULL;
            -- The caller leaves the waitlist for that doctor and day.
            WITH moved AS (
                UPDATE waitlist_entries w SET status = 'booked', updated_at = now()
                FROM waitlist_entries before
                WHERE w.id = before.id AND w.patient_id = p_patient
                  AND w.doctor_id = v.doctor_id AND w.status IN ('waiting', 'offered')
                  AND w.day = (v.starts_at AT TIME ZONE v.timezone)::date
                RETURNING before.status AS was
            )
            SELECT coalesce(bool_or(m.was = 'offered'), false) INTO took_offer FROM moved m;
            INSERT INTO audit_logs SELECT (p_audit).*;
            -- The payload is the one Scheduling builds for every appointment event
            -- (``_event``): ids as text, starts_at in ISO 8601 at UTC.
            INSERT INTO outbox (id, event_type, aggregate_id, payload)
            VALUES (p_event, 'appointment.booked', p_id, jsonb_build_object(
                'appointment_id', p_id::text,
                'patient_id', p_patient::text,
                'doctor_id', v.doctor_id::text,
                'starts_at', to_char(v.starts_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
                    || CASE WHEN date_part('microseconds', v.starts_at)::bigint % 1000000 = 0
                            THEN '' ELSE to_char(v.starts_at AT TIME ZONE 'UTC', '.US') END
                    || '+00:00'));
            timezone := v.timezone;
            outcome := 'booked';
            RETURN NEXT;
        END
        $$
        """
    )
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO amrutam_app")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
