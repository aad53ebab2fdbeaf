"""Checks of `config.yaml` across keys (the sync pair, policies naming sites, overrides and links naming synced
doctypes, matching rules), on plain data.

Split from config.py: they run on the validated model *and*, when some fields are invalid, on the raw file (so
every problem comes out in one pass), so they take dicts, not models, and need nothing else from config.py.
"""

from __future__ import annotations

from typing import Any

FIXED_POLICIES = ("latest_timestamp", "manual")
DEFAULT_DOCTYPES = ("Customer", "Item", "Sales Order")


def match_rules(value: list[Any]) -> tuple[tuple[str, ...], ...]:
    """`sync.match.<Doctype>` as alternatives: `[a, b]` is one rule, `[[a], [b, c]]` two; `[]` none (off)."""
    if not isinstance(value, list):
        raise ValueError("must be a list of field names, or a list of such lists")
    if all(isinstance(v, str) for v in value):
        rules = [value] if value else []
    elif all(isinstance(v, list) for v in value):
        rules = value
    else:
        raise ValueError("mixes field names and lists: write [f1, f2] for one rule, or [[f1], [f2, f3]] for "
                         "alternatives")
    for rule in rules:
        if not rule:
            raise ValueError("an alternative has no fields")
        for field_name in rule:
            if not isinstance(field_name, str) or not field_name.strip() or not field_name.replace("_", "").isalnum():
                raise ValueError(f"{field_name!r} is not a field name (letters, digits and _)")
        if len(set(rule)) != len(rule):
            raise ValueError(f"{rule} names a field twice")
    return tuple(tuple(rule) for rule in rules)


def cross_problems(data: dict[str, Any]) -> list[str]:
    """Checks across keys, on plain data: run on a valid model and, when some fields are invalid, on the raw
    file too — so every problem comes out in one pass."""
    sites = data.get("sites") if isinstance(data.get("sites"), dict) else {}
    sync = data.get("sync") if isinstance(data.get("sync"), dict) else {}
    return [*_pair_problems(sites, sync), *_policy_problems(sites, sync), *_doctype_name_problems(sync),
            *_match_problems(sync)]


def _pair_of(sites: dict[str, Any], sync: dict[str, Any]) -> tuple[str, ...]:
    between = sync.get("between")
    return tuple(between) if isinstance(between, list | tuple) else tuple(list(sites)[:2])


def _pair_problems(sites: dict[str, Any], sync: dict[str, Any]) -> list[str]:
    if sync.get("between") is None:
        return []
    pair = _pair_of(sites, sync)
    problems = [f"sync.between: names unknown site {s!r}" for s in pair if s not in sites]
    if len(set(pair)) != 2:
        problems.append("sync.between: must name two different sites")
    return problems


def _policy_problems(sites: dict[str, Any], sync: dict[str, Any]) -> list[str]:
    allowed = set(FIXED_POLICIES) | {f"{s}_wins" for s in _pair_of(sites, sync)}
    policies = {"sync.conflict_resolution": sync.get("conflict_resolution", "latest_timestamp")}
    for doctype, override in (sync.get("overrides") or {}).items():
        if isinstance(override, dict) and override.get("conflict_resolution") is not None:
            policies[f"sync.overrides.{doctype}.conflict_resolution"] = override["conflict_resolution"]
    return [
        f"{where}: {policy!r} is not one of {', '.join(sorted(allowed))}"
        for where, policy in policies.items()
        if isinstance(policy, str) and policy not in allowed
    ]


def _doctype_name_problems(sync: dict[str, Any]) -> list[str]:
    """An override or a link naming a doctype that is not synced is a typo until shown otherwise: a silently
    ignored `overrides: {Sales Ordr: {conflict_resolution: manual}}` would drop the intended policy."""
    doctypes = sync.get("doctypes")
    configured = set(doctypes) if isinstance(doctypes, list) else set(DEFAULT_DOCTYPES)
    listed = ", ".join(sorted(configured))
    problems = []
    for doctype, override in (sync.get("overrides") or {}).items():
        if doctype not in configured:
            problems.append(f"sync.overrides.{doctype}: {doctype!r} is not in sync.doctypes ({listed})")
            continue
        links = override.get("links") if isinstance(override, dict) else None
        for path, target in (links or {}).items():
            if isinstance(target, str) and target not in configured:
                problems.append(f"sync.overrides.{doctype}.links.{path}: links to {target!r}, which is not in "
                                f"sync.doctypes ({listed}): its names could never be translated")
    return problems


def _match_problems(sync: dict[str, Any]) -> list[str]:
    """`sync.match.<Doctype>` names a synced doctype and holds valid rules (see match_rules)."""
    doctypes = sync.get("doctypes")
    configured = set(doctypes) if isinstance(doctypes, list) else set(DEFAULT_DOCTYPES)
    problems = []
    for doctype, rules in (sync.get("match") or {}).items():
        where = f"sync.match.{doctype}"
        if doctype not in configured:
            problems.append(f"{where}: {doctype!r} is not one of sync.doctypes")
        try:
            match_rules(rules)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    return problems
