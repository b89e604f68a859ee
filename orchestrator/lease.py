"""A named lease in the database: at most one holder at a time, taken over once it expires.

The scheduler holds the lease "scheduler" so that two service replicas never both act; the holder
renews it, and a holder that died stops renewing, so another takes over after `seconds`.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from .db import insert_ignoring_conflicts
from .models import SchedulerLease, utcnow


def take(session: Session, name: str, holder: str, seconds: float) -> bool:
    """Take or renew the lease `name` for `holder` until `seconds` from now; False while another
    holder's lease has not expired. One guarded UPDATE: two takers cannot both win."""
    now = utcnow()
    session.execute(
        insert_ignoring_conflicts(session, SchedulerLease)
        .values(name=name, holder=None, expires_at=None)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    taken = session.execute(
        update(SchedulerLease)
        .where(
            SchedulerLease.name == name,
            (SchedulerLease.holder == holder)
            | SchedulerLease.holder.is_(None)
            | (SchedulerLease.expires_at < now),
        )
        .values(holder=holder, expires_at=now + timedelta(seconds=seconds))
    ).rowcount
    return taken == 1


def release(session: Session, name: str, holder: str) -> None:
    """Give the lease back, if `holder` still holds it."""
    session.execute(
        update(SchedulerLease)
        .where(SchedulerLease.name == name, SchedulerLease.holder == holder)
        .values(holder=None, expires_at=None)
    )
