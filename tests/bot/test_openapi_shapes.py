"""The emulator's JSON against GitHub's own OpenAPI description (npm @octokit/openapi).

Every response the emulator sends while the bot works — a pull request validated, chat-ops, App
tokens, check runs, comments, reactions, teams, hook deliveries — is matched to its operation in
the description and validated against the documented response schema. Fields the emulator
returns must have GitHub's types, enums and nullability; fields it leaves out (GitHub sends ~200
per pull request) are counted, not failed: PyGithub reads them lazily and the bot uses few.

The description is fetched by `.ci/run` (`npm pack @octokit/openapi`) into .cache/; point
SPROUT_GITHUB_OPENAPI at api.github.com.deref.json to use another copy.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from tests.bot.conftest import REPO, comment_payload, pr_payload
from tests.conftest import ROOT
from tests.taxonomy.leaves import ATTRIBUTION, SKILL

SPEC = Path(os.environ.get("SPROUT_GITHUB_OPENAPI",
                           ROOT / ".cache/octokit-openapi/package/generated/api.github.com.deref.json"))
LEAF = "compositional_skills/math/arithmetic/qna.yaml"


def openapi_to_jsonschema(s):
    """OpenAPI 3.0 schema -> JSON Schema draft 4: `nullable` becomes a null type; x-* dropped."""
    if isinstance(s, list):
        return [openapi_to_jsonschema(x) for x in s]
    if not isinstance(s, dict):
        return s
    s = {k: openapi_to_jsonschema(v) for k, v in s.items() if not k.startswith("x-") and k != "example"}
    if s.pop("nullable", False):
        if isinstance(s.get("type"), str):
            s["type"] = [s["type"], "null"]
            if "enum" in s:
                s["enum"] = [*s["enum"], None]
        else:
            s = {"anyOf": [s, {"type": "null"}]}
    return s


def only_missing_fields(error) -> bool:
    """True when the error is a left-out required field, also inside anyOf/oneOf: some branch
    fails for nothing but missing fields (the emulator's user lacks gravatar_id, say)."""
    if error.validator == "required":
        return True
    if error.validator in ("anyOf", "oneOf") and error.context:
        branches: dict[int, list] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        return any(all(only_missing_fields(x) for x in subs) for subs in branches.values())
    return False


@pytest.fixture(scope="module")
def spec():
    if not SPEC.exists():
        pytest.skip(f"{SPEC} not present: `npm pack @octokit/openapi` (.ci/run does) or set SPROUT_GITHUB_OPENAPI")
    return json.loads(SPEC.read_text())


def operation(spec: dict, method: str, path: str) -> tuple[str, dict] | None:
    """The documented operation for a concrete request path (the most literal template wins)."""
    best = None
    for template, ops in spec["paths"].items():
        if method.lower() not in ops:
            continue
        # {path} (contents) spans folders; every other parameter is one segment
        rx = "^" + re.sub(r"\{([^}]+)\}", lambda m: ".+" if m[1] == "path" else "[^/]+", template) + "$"
        if re.match(rx, path):
            literal = len(re.sub(r"\{[^}]+\}", "", template))
            if best is None or literal > best[0]:
                best = (literal, template, ops[method.lower()])
    return (best[1], best[2]) if best else None


def test_emulator_responses_match_githubs_openapi(spec, make_bot, settings, emulator, pem):
    import jsonschema
    emulator.recorded = []
    emulator.state.teams[("octo-org", "trainers")] = {"teammate"}
    emulator.state.installation_permissions["members"] = "read"  # else GitHub's (undocumented) 403
    app = replace(settings, github_token=None, app_id=12345, private_key=pem, trusted_teams=("octo-org/trainers",))
    bot = make_bot(app, recover=False)
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, {LEAF: SKILL, LEAF.replace("qna.yaml", "attribution.txt"): ATTRIBUTION})
    bot.deliver("pull_request", pr_payload("opened", 1, "h" * 40))
    bot.wait_idle()
    bot.deliver("pull_request", pr_payload("synchronize", 1, "h" * 40))  # finds and updates both
    bot.wait_idle()
    for who, text in (("maintainer", "/sprout help"), ("teammate", "/sprout validate"), ("stranger", "/sprout retrain")):
        c = emulator.add_comment(REPO, 1, who, text)
        bot.deliver("issue_comment", comment_payload(c, 1, who))
        bot.wait_idle()
    from bot.recovery import recover
    recover(bot.github, bot.store)
    # token mode: commit statuses, GET /user for whose comments are the bot's
    token_bot = make_bot(replace(settings, github_token="ghp_test", app_id=None, private_key=None,
                                 database_url=settings.database_url + "-token"), recover=False)
    emulator.add_pull(REPO, 2, "b" * 40, "t" * 40, {}, {LEAF: SKILL, LEAF.replace("qna.yaml", "attribution.txt"): ATTRIBUTION})
    token_bot.deliver("pull_request", pr_payload("opened", 2, "t" * 40))
    token_bot.wait_idle()
    assert emulator.statuses(REPO, "t" * 40) and emulator.comments(REPO, 2)
    assert emulator.check_runs(REPO) and emulator.comments(REPO, 1)

    checked, missing, problems = Counter(), Counter(), []
    for method, path, status, body in emulator.recorded:
        found = operation(spec, method, path)
        assert found, f"{method} {path}: no such operation in GitHub's API description"
        template, op = found
        response = op["responses"].get(str(status))
        assert response, f"{method} {template}: GitHub does not document status {status}"
        schema = (response.get("content") or {}).get("application/json", {}).get("schema")
        if schema is None:
            continue
        checked[f"{method} {template} {status}"] += 1
        validator = jsonschema.Draft4Validator(openapi_to_jsonschema(schema))
        for e in validator.iter_errors(json.loads(body)):
            if only_missing_fields(e):
                missing[template] += 1
            else:
                problems.append(f"{method} {path} -> {template} {status}: at {list(e.absolute_path)}: {e.message[:200]}")
    print(f"{sum(checked.values())} responses over {len(checked)} operations checked; "
          f"missing required fields per operation: {dict(missing)}")
    assert len(checked) >= 12, checked  # the flow above really exercised the API
    assert not problems, "\n".join(problems[:40])
    # and the check can fail: a check run whose status GitHub never sends, and an id as a string
    template, op = operation(spec, "GET", "/repos/o/r/check-runs/1")
    schema = openapi_to_jsonschema(op["responses"]["200"]["content"]["application/json"]["schema"])
    run = json.loads(next(b for m, p, s, b in emulator.recorded if m == "PATCH" and "/check-runs/" in p))
    bad = [e for e in jsonschema.Draft4Validator(schema).iter_errors({**run, "status": "done", "id": "7"})
           if not only_missing_fields(e)]
    assert {tuple(e.absolute_path) for e in bad} == {("status",), ("id",)}
