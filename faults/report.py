"""What each scenario injected and what the invariant said: printed as each ends and as a table at
the end of the run (tests/faults/conftest.py)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from faults.invariant import Verdict


@dataclass
class ScenarioReport:
    scenario: str
    faults: Counter = field(default_factory=Counter)  # kind -> how many were injected
    notes: list[str] = field(default_factory=list)
    verdict: Verdict | None = None

    def inject(self, kind: str, count: int = 1, note: str = "") -> None:
        self.faults[kind] += count
        if note:
            self.notes.append(note)

    @property
    def injected(self) -> int:
        return sum(self.faults.values())

    def line(self) -> str:
        kinds = ", ".join(f"{kind} x{n}" for kind, n in sorted(self.faults.items())) or "none"
        result = self.verdict.summary() if self.verdict else "not checked"
        return f"{self.scenario}: {self.injected} faults injected ({kinds}); invariant {result}"


REPORTS: list[ScenarioReport] = []


def scenario(name: str) -> ScenarioReport:
    report = ScenarioReport(name)
    REPORTS.append(report)
    return report


def table() -> str:
    lines = ["fault suite: faults injected and the invariant, per scenario"]
    for report in REPORTS:
        lines.append("  " + report.line())
        if report.verdict is not None and not report.verdict.ok:
            lines += ["      " + problem for problem in report.verdict.problems[:8]]
    total = sum(r.injected for r in REPORTS)
    passed = sum(1 for r in REPORTS if r.verdict is not None and r.verdict.ok)
    lines.append(f"  total: {total} faults injected in {len(REPORTS)} scenarios; invariant held in {passed}")
    return "\n".join(lines)
