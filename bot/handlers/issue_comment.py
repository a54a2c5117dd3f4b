"""issue_comment: chat-ops commands on pull requests, with permission checks."""

from __future__ import annotations

from ..commands import COMMANDS, PRIVILEGED_ROLES, help_text, parse
from ..dispatch import KINDS
from ..freshness import head_at_comment
from ..github import PermissionMissing
from ..router import Event, Router
from ..validation import run_validation

router = Router()


def _allowed(gh, ctx, repo: str, login: str) -> bool:
    if gh.permission(repo, login) in PRIVILEGED_ROLES:
        return True
    # Teams listed in the settings; an empty list grants nothing extra.
    return any(gh.in_team(team, login) for team in ctx.settings.trusted_teams)


@router.on("issue_comment", "created")
def command(event: Event, ctx) -> None:
    p = event.payload
    issue, comment = p["issue"], p["comment"]
    user = comment.get("user") or {}
    if not issue.get("pull_request") or user.get("type") == "Bot" or \
            user.get("login", "").lower() in (f"{ctx.settings.app_name}[bot]".lower(),):
        return
    parsed = parse(comment.get("body", ""), ctx.settings.command_prefix, ctx.settings.app_name)
    if parsed is None:
        return
    name, args = parsed
    repo, number, login = event.repo, issue["number"], user.get("login", "")
    gh = ctx.gh(event.installation_id)
    prefix = ctx.settings.command_prefix
    gh.react(repo, number, comment["id"], "eyes")
    cmd = COMMANDS.get(name)
    if cmd is None:
        gh.reply(repo, number, f"@{login} I don't know the command `{name}`, sorry. "
                 f"Here is what I can do:\n\n{help_text(prefix)}")
        return
    try:
        allowed = not cmd.privileged or _allowed(gh, ctx, repo, login)
    except PermissionMissing as e:
        gh.reply(repo, number, f"@{login} I could not check membership of the trusted teams: GitHub "
                 f"refused (`{e}`). The Sprout App needs the organization permission *Members: read* "
                 "(a token: `read:org`). A maintainer can run the command meanwhile.")
        return
    if not allowed:
        gh.reply(repo, number, f"@{login} `{prefix} {name}` starts costly work, so it needs write, "
                 "maintain or admin access to this repository"
                 + (" or membership of a trusted team" if ctx.settings.trusted_teams else "")
                 + ". A maintainer can run it for you.")
        return
    if name == "help":
        gh.reply(repo, number, help_text(prefix))
    elif name == "validate":
        pr = gh.pull(repo, number)
        conclusion = run_validation(gh, repo, number, pr.head.sha)
        gh.react(repo, number, comment["id"], "+1" if conclusion != "failure" else "confused")
    elif name == "status":
        gh.reply(repo, number, _status(ctx, repo))
    elif name in ("retrain", "cancel", "generate", "precheck"):
        if ctx.dispatcher is None:
            gh.reply(repo, number, f"@{login} `{prefix} {name}` needs a Ray cluster, and retraining "
                     "is not enabled on this Sprout installation.")
            return
        trigger = f"comment-{comment['id']}"
        if name == "cancel":
            everything = bool(args) and args[0].lower() == "all"
            if everything and gh.permission(repo, login) not in ("admin", "maintain"):
                gh.reply(repo, number, f"@{login} `{prefix} cancel all` cancels every job of this "
                         "repository, so it needs maintain or admin access.")
                return
            n = ctx.dispatcher.cancel(repo, None if everything else number)
            scope = "in this repository" if everything else "for this pull request"
            gh.reply(repo, number, f"@{login} cancelled {n} job(s) {scope}." if n
                     else f"@{login} nothing to cancel {scope}.")
            return
        pr = gh.pull(repo, number)
        if name == "retrain":
            # Only reviewed, merged content trains a model that may be registered.
            if not pr.merged or not pr.merge_commit_sha:
                gh.reply(repo, number, f"@{login} `{prefix} retrain` works on merged pull requests "
                         "only: training on unreviewed content could register a model nobody reviewed. "
                         f"Use `{prefix} generate` or `{prefix} precheck` before merging.")
                return
            sha = pr.merge_commit_sha
            job = ctx.dispatcher.request(repo, number, sha, event.installation_id, trigger=trigger)
            gh.reply(repo, number, f"@{login} retraining on `{sha[:7]}` is queued as job {job}.")
            return
        ok, why = head_at_comment(ctx.store, repo, number, pr, comment.get("created_at"))
        if not ok:
            gh.reply(repo, number, f"@{login} not started: {why}")
            return
        # Previews and prechecks look at what this pull request changes: its head against its base.
        kind = "preview" if name == "generate" else "precheck"
        job = ctx.dispatcher.request(repo, number, pr.head.sha, event.installation_id, kind=kind,
                                     base_sha=pr.base.sha, trigger=trigger)
        what = ("a preview of the synthetic data for" if kind == "preview"
                else "the current student's answers to the seed questions of")
        gh.reply(repo, number, f"@{login} {what} `{pr.head.sha[:7]}` is queued as job {job}; "
                 "the results will appear in a comment here and in the "
                 f"`{KINDS[kind]['check']}` check.")


def _status(ctx, repo: str) -> str:
    jobs = ctx.store.jobs(repo=repo, limit=10)
    if not jobs:
        return "No retraining jobs for this repository yet."
    rows = "\n".join(f"| {j['id']} | {j['kind']} | `{j['sha'][:7]}` | #{j['pr']} | {j['status']} | "
                     f"{j.get('stage') or ''} | {j.get('verdict') or ''} | {j['ray_job_id'] or ''} |" for j in jobs)
    return ("Jobs (newest first):\n\n| job | kind | commit | PR | status | stage | verdict | Ray job |\n"
            f"|---|---|---|---|---|---|---|---|\n{rows}")
