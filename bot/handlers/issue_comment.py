"""issue_comment: chat-ops commands on pull requests, with permission checks."""

from __future__ import annotations

import re

from pipeline import mdescape as md

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


MARKER = "<!-- sprout:"  # every comment the bot writes carries one
_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$")


def mention(login: str) -> str:
    """'@login' for a GitHub login; anything else as inert text."""
    return f"@{login}" if _LOGIN.match(login or "") else md.text(login)


def unknown_command_reply(login: str, name: str, prefix: str) -> str:
    return (f"{mention(login)} I don't know the command {md.code(name, limit=100)}, sorry. "
            f"Here is what I can do:\n\n{help_text(prefix)}")


def from_the_bot(gh, ctx, user: dict, body: str) -> bool:
    """A comment the bot wrote (its App bot user, its token's user, any Bot) or one carrying its
    marker: never read for commands, so that nothing the bot echoes can command it."""
    if MARKER in (body or ""):
        return True
    login = (user.get("login") or "").lower()
    if user.get("type") == "Bot" or login == f"{ctx.settings.app_name}[bot]".lower():
        return True
    return login == gh.login.lower()  # asked of GitHub once (GET /user or /app), then cached


@router.on("issue_comment", "created")
def command(event: Event, ctx) -> None:
    p = event.payload
    issue, comment = p["issue"], p["comment"]
    user = comment.get("user") or {}
    if not issue.get("pull_request"):
        return
    parsed = parse(comment.get("body", ""), ctx.settings.command_prefix, ctx.settings.app_name)
    if parsed is None:
        return
    gh = ctx.gh(event.installation_id)
    if from_the_bot(gh, ctx, user, comment.get("body", "")):
        return
    name, args = parsed
    repo, number, login = event.repo, issue["number"], user.get("login", "")
    prefix = ctx.settings.command_prefix
    admitted = ctx.store.admit_command(login, comment["id"], ctx.settings.commands_per_hour)
    if admitted == "silent":
        return  # told once already: no reply, no reaction, no API request
    if admitted == "warn":
        gh.reply(repo, number, f"{mention(login)} you have sent {ctx.settings.commands_per_hour} commands "
                 "in the last hour, the most one person may; I will ignore your commands until the "
                 "hour has passed (without replying again).")
        return
    gh.react(repo, number, comment["id"], "eyes")
    cmd = COMMANDS.get(name)
    if cmd is None:
        gh.reply(repo, number, unknown_command_reply(login, name, prefix))
        return
    try:
        allowed = not cmd.privileged or _allowed(gh, ctx, repo, login)
    except PermissionMissing as e:
        gh.reply(repo, number, f"{mention(login)} I could not check membership of the trusted teams: GitHub "
                 f"refused ({md.code(str(e), limit=300)}). The Sprout App needs the organization permission *Members: read* "
                 "(a token: `read:org`). A maintainer can run the command meanwhile.")
        return
    if not allowed:
        gh.reply(repo, number, f"{mention(login)} `{prefix} {name}` starts costly work, so it needs write, "
                 "maintain or admin access to this repository"
                 + (" or membership of a trusted team" if ctx.settings.trusted_teams else "")
                 + ". A maintainer can run it for you.")
        return
    if name == "help":
        gh.reply(repo, number, help_text(prefix))
    elif name == "validate":
        pr = gh.pull(repo, number)
        conclusion = run_validation(gh, repo, number, pr.head.sha, ctx.settings.max_annotations)
        gh.react(repo, number, comment["id"], "+1" if conclusion != "failure" else "confused")
    elif name == "status":
        gh.reply(repo, number, _status(ctx, repo))
    elif name in ("retrain", "cancel", "generate", "precheck"):
        if ctx.dispatcher is None:
            gh.reply(repo, number, f"{mention(login)} `{prefix} {name}` needs a Ray cluster, and retraining "
                     "is not enabled on this Sprout installation.")
            return
        trigger = f"comment-{comment['id']}"
        if name == "cancel":
            everything = bool(args) and args[0].lower() == "all"
            if everything and gh.permission(repo, login) not in ("admin", "maintain"):
                gh.reply(repo, number, f"{mention(login)} `{prefix} cancel all` cancels every job of this "
                         "repository, so it needs maintain or admin access.")
                return
            n = ctx.dispatcher.cancel(repo, None if everything else number)
            scope = "in this repository" if everything else "for this pull request"
            gh.reply(repo, number, f"{mention(login)} cancelled {n} job(s) {scope}." if n
                     else f"{mention(login)} nothing to cancel {scope}.")
            return
        pr = gh.pull(repo, number)
        if name == "retrain":
            # Only reviewed, merged content trains a model that may be registered.
            if not pr.merged or not pr.merge_commit_sha:
                gh.reply(repo, number, f"{mention(login)} `{prefix} retrain` works on merged pull requests "
                         "only: training on unreviewed content could register a model nobody reviewed. "
                         f"Use `{prefix} generate` or `{prefix} precheck` before merging.")
                return
            sha = pr.merge_commit_sha
            job = ctx.dispatcher.request(repo, number, sha, event.installation_id, trigger=trigger)
            gh.reply(repo, number, f"{mention(login)} retraining on `{sha[:7]}` is queued as job {job}.")
            return
        ok, why = head_at_comment(ctx.store, repo, number, pr, comment.get("created_at"))
        if not ok:
            gh.reply(repo, number, f"{mention(login)} not started: {why}")
            return
        # Previews and prechecks look at what this pull request changes: its head against its base.
        kind = "preview" if name == "generate" else "precheck"
        job = ctx.dispatcher.request(repo, number, pr.head.sha, event.installation_id, kind=kind,
                                     base_sha=pr.base.sha, trigger=trigger)
        what = ("a preview of the synthetic data for" if kind == "preview"
                else "the current student's answers to the seed questions of")
        gh.reply(repo, number, f"{mention(login)} {what} `{pr.head.sha[:7]}` is queued as job {job}; "
                 "the results will appear in a comment here and in the "
                 f"`{KINDS[kind]['check']}` check.")


def _status(ctx, repo: str) -> str:
    jobs = ctx.store.jobs(repo=repo, limit=10)
    if not jobs:
        return "No retraining jobs for this repository yet."
    c = md.cell
    rows = "\n".join(f"| {j['id']} | {c(j['kind'])} | {md.code(j['sha'][:7], table=True)} | #{j['pr']} | "
                     f"{c(j['status'])} | {c(j.get('stage'))} | {c(j.get('verdict'))} | {c(j['ray_job_id'])} |"
                     for j in jobs)
    return ("Jobs (newest first):\n\n| job | kind | commit | PR | status | stage | verdict | Ray job |\n"
            f"|---|---|---|---|---|---|---|---|\n{rows}")
