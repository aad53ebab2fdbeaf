"""What an engine learns about the sites' doctypes while it runs, asked once per engine.

Owned by `SyncEngine` (`engine.caches`) and read by the bulk path and the rename check, so neither keeps
private state on the engine object. Nothing here is persisted: a restarted engine asks the sites again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class EngineCaches:
    # doctype → may list rows stand for whole documents on both sites (no child tables, batch inserts possible)
    bulk_eligible: dict[str, bool] = field(default_factory=dict)
    # (doctype, site) → one listed row hashed like the document read in full; batches in flight share the read
    rows_checked: dict[tuple[str, str], asyncio.Future[bool]] = field(default_factory=dict)
    # (site, doctype) → the doctype is named from a field (autoname "field:…"), so a rename follows that field
    named_by_field: dict[tuple[str, str], bool] = field(default_factory=dict)
