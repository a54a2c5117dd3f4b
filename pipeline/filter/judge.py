"""Optional LLM judge, when the teacher is a real model. Defaults follow InstructLab's full
pipeline: knowledge kept when faithful, relevance 2/2 and question 1/1; skills when question 1/1
and answer >= 2/3.

The judge can be asked ahead: generation sends each pair's judge request into the endpoint's
pool as soon as the pair is parsed (``ask_ahead``), so judging overlaps generation instead of
waiting for its last request; ``judge_filter`` then reads those replies by request key and asks
only for the pairs it has none for. The decision is the same function of the same reply either way.
"""

from __future__ import annotations

import concurrent.futures
import re
from dataclasses import dataclass
from typing import Callable

from ..sdg import prompts
from .base import FilterResult


@dataclass(frozen=True)
class JudgeConfig:
    knowledge_min_relevance: int = 2
    knowledge_min_question: int = 1
    knowledge_require_faithful: bool = True
    skill_min_question: int = 1
    skill_min_answer: int = 2
    max_tokens: int = 64
    """The reply is four short lines: a bound keeps a rambling judge from costing 1,024 tokens a pair."""


def parse_scores(text: str) -> dict[str, int]:
    scores = {}
    for key in ("faithful", "relevance", "question", "answer"):
        # [^\w\n]*, not \W*: a \W* run could cross newlines, rescanning every blank line (quadratic)
        m = re.search(rf"(?im)^[^\w\n]*{key}\W*[:=]\s*(\d)", text or "")
        if m:
            scores[key] = int(m.group(1))
    return scores


def judge_prompt(record: dict) -> prompts.Prompt:
    return prompts.render("judge", source=record.get("source_chunk") or record.get("context") or "(none)",
                          question=record["question"], answer=record["answer"])


def judge_params(config: JudgeConfig = JudgeConfig()):
    from ..sdg.teachers import GenParams
    return GenParams(temperature=0.0, max_tokens=config.max_tokens)


def reply_key(judge, record: dict, config: JudgeConfig = JudgeConfig()) -> str:
    """The judge request's identity: the judge, the prompt the record makes, the parameters."""
    from ..sdg.journal import request_key
    return request_key([getattr(judge, "identity", None), list(judge_prompt(record).messages)], 1,
                       judge_params(config).key(), 0)


def can_ask_ahead(judge) -> bool:
    """Only a judge behind a request pool answers while generation goes on; a local model would
    take turns with it."""
    return bool(getattr(judge, "can_judge", False) and hasattr(judge, "submit"))


def ask_ahead(judge, records: list[dict], asked: dict, config: JudgeConfig = JudgeConfig(),
              known: dict | None = None, on_reply: Callable | None = None) -> None:
    """Send each record's judge request into the judge's pool now. ``asked`` maps request key to a
    future, or to the ``Completion`` when ``known`` (e.g. a journal) already holds it; a key
    already in ``asked`` is not asked twice. ``on_reply(key, completion)`` as each reply arrives
    (on the pool's thread: keep it short, e.g. a journal line)."""
    for r in records:
        key = reply_key(judge, r, config)
        if key in asked:
            continue
        if known and key in known:
            asked[key] = known[key]
            continue
        asked[key] = f = judge.submit(judge_prompt(r), 1, judge_params(config))
        if on_reply is not None:
            f.add_done_callback(lambda f, key=key: f.exception() is None and on_reply(key, f.result()))


def collect(asked: dict) -> dict:
    """Waits for ``ask_ahead``'s requests: {key: Completion}. A request that failed is left out
    (the filter asks it again, and fails there if the judge is really gone)."""
    out = {}
    for key, f in asked.items():
        if isinstance(f, concurrent.futures.Future):
            if f.exception() is None:
                out[key] = f.result()
        else:
            out[key] = f
    return out


def decide(record: dict, reply: str, config: JudgeConfig = JudgeConfig()) -> tuple[dict | None, str]:
    """(the record with its scores, "") when kept, else (None, the reason)."""
    s = parse_scores(reply)
    if len(s) < 3:
        return None, "judge reply unreadable"
    if record.get("kind") == "knowledge":
        ok = (s.get("faithful", 0) >= 1 or not config.knowledge_require_faithful) and \
            s.get("relevance", 0) >= config.knowledge_min_relevance and s.get("question", 0) >= config.knowledge_min_question
    else:
        ok = s.get("question", 0) >= config.skill_min_question and s.get("answer", 0) >= config.skill_min_answer
    return ({**record, "judge": s}, "") if ok else (None, f"judge scores below the thresholds ({s})")


def judge_filter(records: list[dict], teacher, config: JudgeConfig = JudgeConfig(),
                 replies: dict[str, str] | None = None) -> FilterResult:
    """``replies``: judge replies already given (by ``reply_key``), e.g. asked ahead during
    generation; the other records are asked now."""
    out = FilterResult("judge")
    if not getattr(teacher, "can_judge", False):
        out.kept = list(records)
        out.skipped = "the offline teacher cannot judge; use a model teacher to enable the judge"
        return out
    replies = replies or {}
    keys = [reply_key(teacher, r, config) for r in records] if replies else [None] * len(records)
    todo = [i for i, k in enumerate(keys) if k not in replies]
    asked = teacher.complete([judge_prompt(records[i]) for i in todo], 1, judge_params(config)) if todo else []
    got = {i: (reply[0] if reply else "") for i, reply in zip(todo, asked)}
    for i, r in enumerate(records):
        kept, why = decide(r, got[i] if i in got else replies[keys[i]], config)
        if kept is not None:
            out.kept.append(kept)
        else:
            out.drop(r, why)
    out.asked = len(todo)
    return out
