"""pull_request: validate on open/update; hand merged pull requests to retraining."""

from __future__ import annotations

import logging

from ..freshness import github_time
from ..router import Event, Router
from ..validation import run_validation

router = Router()
log = logging.getLogger(__name__)


@router.on("pull_request", "opened", "synchronize", "reopened", "ready_for_review")
def validate(event: Event, ctx) -> None:
    pr = event.payload["pull_request"]
    # what a later command may run on: this head, pushed no later than GitHub's updated_at
    at = github_time(pr.get("updated_at"))
    if at is not None:
        ctx.store.saw_head(event.repo, pr["number"], pr["head"]["sha"], at)
    run_validation(ctx.gh(event.installation_id), event.repo, pr["number"], pr["head"]["sha"],
                   ctx.settings.max_annotations)


@router.on("pull_request", "closed")
def merged(event: Event, ctx) -> None:
    pr = event.payload["pull_request"]
    if not pr.get("merged"):
        return
    if ctx.dispatcher is None:
        log.info("merged %s#%s: retraining is not configured", event.repo, pr["number"])
        return
    sha = pr.get("merge_commit_sha")
    if not sha:
        log.warning("merged %s#%s without a merge commit SHA: not retraining", event.repo, pr["number"])
        return
    ctx.dispatcher.request(event.repo, pr["number"], sha, event.installation_id, trigger="merge")
