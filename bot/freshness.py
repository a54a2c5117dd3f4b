"""Commands bind to what the commenter saw: never run on commits pushed after the comment.

The bot remembers every sighting of a pull request head with GitHub's own time for it (the
``updated_at`` of the pull_request delivery that announced it: pushing bumps it). A command
written at time T runs on the current head only if it is the head last seen at or before T: a
head seen before T, replaced, and pushed back after T (A -> B -> A) does not run. A head
the bot never heard announced is accepted when the pull request has not changed since the
comment (``updated_at`` ≤ T, so nothing was pushed after it); otherwise the bot remembers it
now (GitHub's clock, from the response's Date header) and asks for a new comment.
"""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import parsedate_to_datetime


def github_time(value) -> float | None:
    """Seconds since the epoch from GitHub's ISO 8601 text (or a datetime), None if unknown."""
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def head_at_comment(store, repo: str, number: int, pr, comment_created) -> tuple[bool, str]:
    """(allowed, why not) for running a command written at ``comment_created`` on ``pr``'s
    current head (``pr`` a PyGithub PullRequest)."""
    sha = pr.head.sha
    created = github_time(comment_created)
    if created is None:
        return False, "the comment carries no creation time"
    if store.head_at(repo, number, created) == sha:
        return True, ""  # the head as last seen at or before the comment: what its author saw
    if store.head_seen_at(repo, number, sha) is None:
        updated = github_time(pr.updated_at)
        if updated is not None and updated <= created:
            store.saw_head(repo, number, sha, updated)
            return True, ""
        now = _response_time(pr)
        store.saw_head(repo, number, sha, now if now is not None else (updated or created) + 1)
        return False, (f"the pull request changed after your comment and I cannot tell whether "
                       f"`{sha[:7]}` is what you reviewed. Comment again to run it on `{sha[:7]}`.")
    # seen, but not as the head at comment time: pushed after it (A -> B -> A: pushed back)
    return False, (f"`{sha[:7]}` was pushed after your comment, so I did not run it on commits you "
                   "may not have seen. Review them and comment again.")


def _response_time(pr) -> float | None:
    try:
        date = (pr.raw_headers or {}).get("date")
        return parsedate_to_datetime(date).timestamp() if date else None
    except (TypeError, ValueError, AttributeError):
        return None
