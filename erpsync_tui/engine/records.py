"""What the sync state knows of one document: its record, its side on each site, its pending creates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


@dataclass(slots=True)
class Side:
    """What we know of a document on one site."""

    site: str
    name: str
    content_hash: str | None
    modified: str | None


@dataclass(slots=True)
class RecordView:
    record_id: int
    doctype: str
    status: str
    base: dict[str, Any] | None
    sides: dict[str, Side]
    created_at: datetime | None = None
    retrying: bool = False  # a create for this record was attempted before (its answer may have been lost)


class AttemptNoted(StrEnum):
    RECORDED = "recorded"
    ALREADY_PAIRED = "already_paired"
    LEASE_LOST = "lease_lost"


@dataclass(slots=True)
class PendingCreate:
    """A record whose counterpart was (perhaps) created on the target without us learning its name."""

    record: RecordView
    hashes: list[str]  # the content hash of every insert sent for it
    payloads: list[dict[str, Any]]  # and its canonical content
    sent: list[datetime]  # and when it was sent (our clock), oldest first

    @property
    def first_sent(self) -> datetime:
        return self.sent[0]


