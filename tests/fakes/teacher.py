"""A teacher you can script: fixed completions, call counting, and failure injection."""

from __future__ import annotations

from pipeline.sdg.offline import complete as offline_complete
from pipeline.sdg.teachers import GenParams


class ScriptedTeacher:
    """Answers like the offline teacher unless ``script`` (task -> text or callable) says
    otherwise; ``fail_after`` raises after that many complete() calls (a killed run)."""

    can_judge = True

    def __init__(self, script: dict | None = None, fail_after: int | None = None, identity: str = "scripted:v1"):
        self.script = script or {}
        self.fail_after = fail_after
        self.calls = 0
        self.prompts = 0
        self.identity = identity

    def complete(self, prompts, n=1, params=GenParams()):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("scripted teacher: simulated kill")
        self.calls += 1
        self.prompts += len(prompts)
        out = []
        for p in prompts:
            s = self.script.get(p.task)
            if s is None:
                out.append([offline_complete(p, i) for i in range(n)])
            else:
                out.append([s(p, i) if callable(s) else s for i in range(n)])
        return out
