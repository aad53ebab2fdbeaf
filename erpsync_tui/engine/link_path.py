"""The link path of `SyncEngine`: a document whose linked documents the target lacks syncs them first.

Link values are kept in the pair's first site's names (canonical form) and translated to the target's names
just before a write. `LinkPath` is a mixin of `SyncEngine` (engine/sync.py), which supplies the state, `pair`,
`other`, `fetched`, `sync_document`, `_log` and `_run`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from erpsync_tui.config import DoctypePolicy
from erpsync_tui.connectors.base import LinkValidationFailed
from erpsync_tui.engine.links import link_fields, linked_names, translate
from erpsync_tui.engine.outcomes import Fetched, SyncFailed, missing_link_fix, unpaired_link_fix
from erpsync_tui.errors import ErrorCode

MAX_LINK_DEPTH = 4  # how deep "sync the linked document first" may recurse


class LinkPath:
    async def _ensure_links(self, policy: DoctypePolicy, source: Fetched, target_site: str, depth: int) -> Fetched:
        """Sync every linked document the target does not have yet, then re-read links in canonical form."""
        fields = link_fields(policy.doctype, policy.links)
        if not fields or source.doc is None:
            return source
        mapper = self.name_mapper(source.site, target_site)
        links = linked_names(source.doc, fields)
        mapped = await self._run(lambda: [mapper(dt, name) for dt, name in links])  # DB reads: off the loop
        missing = [link for link, name in zip(links, mapped, strict=True) if name is None]
        if not missing:
            if links and source.site != self.pair[0]:
                # Mapped now, perhaps not when `source` was read (its canonical form then kept the raw name, which
                # on the first site may be another document): translate again before anything is written.
                return await self.fetched(policy, source.site, source.doc)
            return source
        for link_doctype, name in missing:
            await self._sync_linked(link_doctype, source.site, name, depth)
        # A linked document its sync left unpaired (ambiguous, set apart, a delete not propagated) has no name on
        # the target. Never write the raw name: on the pair's first site that name may be another document.
        still = await self._run(lambda: [link for link in missing if mapper(*link) is None])
        if still:
            raise SyncFailed(f"{policy.doctype} {source.name}: linked documents not paired with {target_site}: "
                             f"{still}", code=ErrorCode.FIELD_MAPPING, fix=unpaired_link_fix(still, target_site))
        return await self.fetched(policy, source.site, source.doc)

    async def target_body(
        self, policy: DoctypePolicy, canonical: dict[str, Any], target_site: str
    ) -> dict[str, Any]:
        """The canonical document (links in the first site's names) with links in the target's names."""
        fields = link_fields(policy.doctype, policy.links)
        if not fields or target_site == self.pair[0]:
            return canonical
        body, missing = await self._run(translate, canonical, fields, self.name_mapper(self.pair[0], target_site))
        if missing:
            raise SyncFailed(f"{policy.doctype}: linked documents missing on {target_site}: {missing}",
                             code=ErrorCode.FIELD_MAPPING, fix=missing_link_fix(missing, target_site))
        return body

    def name_mapper(self, from_site: str, to_site: str) -> Callable[[str, str], str | None]:
        def mapper(link_doctype: str, name: str) -> str | None:
            return self.state.translate_name(link_doctype, from_site, name, to_site)

        return mapper

    async def _with_links(
        self, policy: DoctypePolicy, target_site: str, depth: int, call: Callable[..., Awaitable[dict[str, Any]]],
        *args: Any,
    ) -> dict[str, Any]:
        """Run a write; if the target says a linked document is missing, sync that one first and retry once."""
        try:
            return await call(*args)
        except LinkValidationFailed as exc:
            if not exc.link_doctype or not exc.link_name or depth >= MAX_LINK_DEPTH:
                raise
            source_site = self.other(target_site)
            source_name = await self._run(self.state.translate_name, exc.link_doctype, target_site,
                                          exc.link_name, source_site) or exc.link_name
            await self._sync_linked(exc.link_doctype, source_site, source_name, depth)
            return await call(*args)

    async def _sync_linked(self, doctype: str, site: str, name: str, depth: int) -> None:
        if depth >= MAX_LINK_DEPTH:
            raise SyncFailed(f"link chain deeper than {MAX_LINK_DEPTH} at {doctype} {name}",
                             code=ErrorCode.FIELD_MAPPING)
        await self._log(f"syncing linked {doctype} {name} first", "INFO", doctype, site, name, outcome="link")
        await self.sync_document(doctype, site, name, depth=depth + 1)
