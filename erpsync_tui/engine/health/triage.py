"""The troubleshooting walk over the results, and their JSON form."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from erpsync_tui.engine.health.result import STEP_QUESTIONS, TRIAGE_STEPS, CheckResult

# ============================================================================================ triage


@dataclass(frozen=True, slots=True)
class TriageVerdict:
    ok: bool  # no failing check at all
    step: str | None  # the first step with a failing check; None when nothing fails
    question: str  # that step's question ("Do the credentials work?"), or "" when nothing fails
    summary: str  # one or two sentences for a human
    failing: tuple[CheckResult, ...] = ()  # the failing checks of `step`
    fixes: tuple[str, ...] = ()  # what to do, one line per distinct fix, "ERP002: …"
    warnings: tuple[CheckResult, ...] = ()  # every warning, whichever step


def triage(results: Iterable[CheckResult]) -> TriageVerdict:
    """Walk TRIAGE_STEPS in order and stop at the first step with a failing check."""
    results = list(results)
    warnings = tuple(r for r in results if r.status == "warn")
    for index, step in enumerate(TRIAGE_STEPS, start=1):
        failing = tuple(r for r in results if r.step == step and r.status == "fail")
        if failing:
            fixes = _fixes(failing)
            names = ", ".join(f"{r.check} {r.target}" + (f" ({r.error_code})" if r.error_code else "") for r in failing)
            summary = f"Step {index} of {len(TRIAGE_STEPS)}, {step} — {STEP_QUESTIONS[step]} No: {names}."
            if fixes:
                summary += f" Fix this first: {fixes[0]}"
            return TriageVerdict(False, step, STEP_QUESTIONS[step], summary, failing, fixes, warnings)
    summary = f"All {len(results)} checks pass."
    if warnings:
        listed = ", ".join(f"{r.check} {r.target} ({r.value})" for r in warnings)
        summary = f"No check fails; {len(warnings)} warning{'s' if len(warnings) != 1 else ''}: {listed}."
    return TriageVerdict(True, None, "", summary, (), _fixes(warnings), warnings)


def _fixes(results: Iterable[CheckResult]) -> tuple[str, ...]:
    lines = (f"{r.error_code}: {r.quick_fix}" if r.error_code else r.quick_fix for r in results if r.quick_fix)
    return tuple(dict.fromkeys(lines))


def results_as_json(results: Iterable[CheckResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
