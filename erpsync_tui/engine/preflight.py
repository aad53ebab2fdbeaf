"""Before any work: can we log in to each site, and does each configured doctype exist there and may we read it?

`sync`, `test` and `doctor` ask this first, so a wrong secret stops at once with ERP002 — instead of 400 creates
that each get a 401 — and a doctype typo (`doctypes: [Itme]`) or a missing role is named before anything runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from erpsync_tui.connectors.base import AuthenticationFailed, Connector, ConnectorError, NotFound, PermissionDenied
from erpsync_tui.errors import ErrorCode, quick_fix


@dataclass(frozen=True, slots=True)
class Problem:
    site: str
    code: str
    message: str
    fix: str
    doctype: str | None = None

    def render(self) -> str:
        tagged = self.message if self.message.startswith(f"[{self.code}]") else f"[{self.code}] {self.message}"
        return f"{tagged}\n  fix: {self.fix}"


class PreflightFailed(Exception):
    """A site or doctype problem found before any work; nothing was written."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


async def check_site(name: str, connector: Connector, doctypes: Sequence[str]) -> list[Problem]:
    """Authentication first (nothing else can be judged without it), then each doctype's meta and one row."""
    try:
        await connector.whoami()
    except AuthenticationFailed as exc:
        return [Problem(name, str(exc.code), str(exc), f"The key or secret for {name} is wrong or revoked: "
                        f"generate new keys for the sync user, then `erpsync-tui secrets set {name}`.")]
    except ConnectorError as exc:
        return [Problem(name, str(exc.code), str(exc), exc.quick_fix)]
    problems: list[Problem] = []
    for doctype in doctypes:
        problem = await check_doctype(name, connector, doctype)
        if problem is not None:
            problems.append(problem)
    return problems


async def check_doctype(name: str, connector: Connector, doctype: str) -> Problem | None:
    """The doctype's meta says it exists and is no child table; one row says the sync user may read it.

    The meta is `GET /api/resource/DocType/<doctype>` (the DocType document): a 404 there is a doctype the site
    does not have, told apart from a route or permission problem. It says nothing about reading the doctype's
    documents, hence the one-row list after it. A sync user who may not read DocType itself (a 403 on the meta)
    is no problem of the sync: existence is then judged by the row read alone.
    """
    try:
        meta = await connector.get("DocType", doctype)
    except PermissionDenied:
        meta = {}
    except ConnectorError as exc:
        return Problem(name, str(exc.code), str(exc), exc.quick_fix or quick_fix(exc.code), doctype)
    if meta is None:
        return _missing(name, doctype)
    if meta.get("istable"):
        return Problem(name, str(ErrorCode.FIELD_MAPPING), f"{doctype!r} on {name} is a child table: its rows are "
                       "synced inside their parent documents, never on their own",
                       f"Remove {doctype} from sync.doctypes and sync the doctype whose table it is.", doctype)
    try:
        async for _row in connector.list_documents(doctype, fields=("name",), limit=1):  # type: ignore[attr-defined]
            break
    except NotFound:
        return _missing(name, doctype)
    except PermissionDenied as exc:
        return Problem(name, str(exc.code), f"the sync user may not read {doctype} on {name}: {exc}",
                       exc.quick_fix, doctype)
    except ConnectorError as exc:
        return Problem(name, str(exc.code), str(exc), exc.quick_fix or quick_fix(exc.code), doctype)
    return None


def _missing(name: str, doctype: str) -> Problem:
    return Problem(name, str(ErrorCode.FIELD_MAPPING), f"doctype {doctype!r} does not exist on {name}",
                   f"Check the spelling in sync.doctypes (or overrides), or install the app that defines "
                   f"{doctype} on {name}.", doctype)


async def preflight(connectors: Mapping[str, Connector], doctypes: Sequence[str]) -> list[Problem]:
    """Every site's problems (sites checked concurrently), in site order."""
    names = list(connectors)
    found = await asyncio.gather(*(check_site(n, connectors[n], doctypes) for n in names))
    return [problem for problems in found for problem in problems]
