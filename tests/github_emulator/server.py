"""The emulator's HTTP side: real sockets, GitHub's JSON shapes, Link pagination, faults."""

from __future__ import annotations

import asyncio
import base64
import shutil
import tempfile
from pathlib import Path
import json
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from .state import Pull, Repo, State, iso


@dataclass
class Fault:
    """Answer matching requests with ``status`` (or a delay) ``times`` times."""

    method: str
    path: str  # regex matched against the request path
    status: int = 500
    times: int = 1
    retry_after: int | None = None
    rate_limit_reset: float | None = None  # primary rate limit: X-RateLimit-Remaining: 0
    delay: float = 0.0
    message: str = "Server Error"
    drop: bool = False  # start a 200 response, then cut the connection mid-body
    secondary: bool = False  # a secondary rate limit: 403 with GitHub's message, no Retry-After


def _user(login: str, base: str, kind: str = "User") -> dict:
    uid = abs(hash(login)) % 10_000_000
    return {"login": login, "id": uid, "node_id": f"U_{uid}", "type": kind, "site_admin": False,
            "url": f"{base}/users/{login}", "html_url": f"https://github.com/{login}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}"}


class Emulator:
    """Start with ``with Emulator() as gh:``; ``gh.url`` is the API base URL for PyGithub."""

    def __init__(self) -> None:
        self.state = State()
        self.faults: list[Fault] = []
        self.app = self._build_app()
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.port = 0
        self._git_root = Path(tempfile.mkdtemp(prefix="emulator-git-"))
        self.recorded: list | None = None  # set to [] to keep (method, path, status, JSON body)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Emulator":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("emulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.server:
            self.server.should_exit = True
            self.thread.join(timeout=5)
        shutil.rmtree(self._git_root, ignore_errors=True)

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- test helpers ----------------------------------------------------------------------
    def add_repo(self, full_name: str, permissions: dict | None = None) -> Repo:
        owner, name = full_name.split("/")
        with self.state.lock:
            repo = Repo(self.state.next_id(), owner, name, permissions=dict(permissions or {}))
            self.state.repos[full_name] = repo
            return repo

    def add_commit(self, full_name: str, sha: str, files: dict[str, bytes | str]) -> None:
        repo = self.state.repos[full_name]
        repo.commits[sha] = {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}

    def add_pull(self, full_name: str, number: int, base_sha: str, head_sha: str,
                 base_files: dict, head_files: dict, **kw) -> Pull:
        """A pull request whose changed files are the difference between two commits."""
        self.add_commit(full_name, base_sha, base_files)
        self.add_commit(full_name, head_sha, head_files)
        changes = []
        for path in sorted(set(base_files) | set(head_files)):
            if path not in base_files:
                changes.append({"filename": path, "status": "added"})
            elif path not in head_files:
                changes.append({"filename": path, "status": "removed"})
            elif base_files[path] != head_files[path]:
                changes.append({"filename": path, "status": "modified"})
        pull = Pull(number, head_sha, base_sha, files=changes, **kw)
        self.state.repos[full_name].pulls[number] = pull
        return pull

    def push(self, full_name: str, number: int, head_sha: str, files: dict, at: float | None = None) -> Pull:
        """The author pushes (or force-pushes) ``head_sha`` to the pull request at ``at``."""
        pull = self.state.repos[full_name].pulls[number]
        self.add_commit(full_name, head_sha, files)
        pull.head_sha = head_sha
        pull.updated_at = at if at is not None else time.time()
        return pull

    def add_comment(self, full_name: str, number: int, author: str, body: str) -> dict:
        """A comment written by a person (as the webhook for it would describe)."""
        repo = self.state.repos[full_name]
        with self.state.lock:
            c = {"id": self.state.next_id(), "node_id": "IC_h", "body": body, "created_at": iso(),
                 "updated_at": iso(), "_number": number, "_author": author}
            repo.comments[c["id"]] = c
        return c

    # -- git -------------------------------------------------------------------------------
    def serve_git(self, full_name: str, workdir: Path) -> str:
        """Serve a real repository at ``{url}/{owner}/{name}.git`` over git's "dumb" HTTP protocol
        (static files: what `git clone` needs, no git server), as GitHub serves clone URLs. Call
        again after new commits. Returns the clone URL."""
        bare = self._git_root / f"{full_name}.git"
        if not bare.exists():
            bare.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "clone", "-q", "--bare", str(workdir), str(bare)], check=True)
        else:
            subprocess.run(["git", "-C", str(bare), "fetch", "-q", str(workdir), "+refs/heads/*:refs/heads/*"],
                           check=True)
        subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
        self.state.git[full_name] = bare
        return f"{self.url}/{full_name}.git"

    def add_commit_from_git(self, full_name: str, workdir: Path, sha: str) -> dict[str, bytes]:
        """Make the API's contents and commits answer for ``sha`` with that commit's real files."""
        names = subprocess.run(["git", "-C", str(workdir), "ls-tree", "-r", "--name-only", "-z", sha],
                               check=True, capture_output=True).stdout.decode().split("\0")
        files = {n: subprocess.run(["git", "-C", str(workdir), "show", f"{sha}:{n}"], check=True,
                                   capture_output=True).stdout for n in names if n}
        self.add_commit(full_name, sha, files)
        return files

    def add_pull_from_git(self, full_name: str, number: int, workdir: Path, base_sha: str, head_sha: str,
                          **kw) -> Pull:
        """A pull request between two real commits of ``workdir``."""
        base = self.add_commit_from_git(full_name, workdir, base_sha)
        head = self.add_commit_from_git(full_name, workdir, head_sha)
        if kw.get("merge_sha"):
            self.add_commit_from_git(full_name, workdir, kw["merge_sha"])
        return self.add_pull(full_name, number, base_sha, head_sha, base, head, **kw)

    def inject(self, fault: Fault) -> None:
        with self.state.lock:
            self.faults.append(fault)

    def statuses(self, full_name: str, sha: str | None = None) -> list[dict]:
        return [x for x in self.state.repos[full_name].statuses if sha is None or x["_sha"] == sha]

    def check_runs(self, full_name: str) -> list[dict]:
        return list(self.state.repos[full_name].check_runs.values())

    def comments(self, full_name: str, number: int | None = None) -> list[dict]:
        repo = self.state.repos[full_name]
        return [c for c in repo.comments.values() if number is None or c["_number"] == number]

    def calls(self, method: str | None = None, pattern: str = "") -> list[tuple[str, str, int]]:
        return [c for c in self.state.calls if (method is None or c[0] == method)
                and re.search(pattern, c[1])]

    # -- HTTP ------------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI()
        emu = self
        st = self.state

        @app.middleware("http")
        async def faults_and_log(request: Request, call_next):
            path = request.url.path
            fault = None
            with st.lock:
                for f in emu.faults:
                    if f.times > 0 and f.method == request.method and re.search(f.path, path):
                        f.times -= 1
                        fault = f
                        break
            auth = request.headers.get("authorization", "")
            if auth.startswith("token ghs_") and st.tokens.get(auth[6:], 0) < time.time():
                st.calls.append((request.method, path, 401))
                return JSONResponse({"message": "Bad credentials"}, 401)
            if fault and fault.drop:
                st.calls.append((request.method, path, 0))

                async def cut():  # a few bytes of what was promised, then the socket closes
                    yield b'{"id": 1, "na'
                    raise ConnectionAbortedError("emulated dropped connection")
                return StreamingResponse(cut(), status_code=200, media_type="application/json",
                                         headers={"Content-Length": "4096"})
            if fault and fault.delay:
                await asyncio.sleep(fault.delay)
            if fault and fault.status:
                headers = {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "4999"}
                body: dict[str, Any] = {"message": fault.message,
                                        "documentation_url": "https://docs.github.com/rest"}
                if fault.retry_after is not None or fault.secondary:
                    if fault.retry_after is not None:
                        headers["Retry-After"] = str(fault.retry_after)
                    body["message"] = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
                if fault.rate_limit_reset is not None:
                    headers["X-RateLimit-Remaining"] = "0"
                    headers["X-RateLimit-Reset"] = str(int(fault.rate_limit_reset))
                    body["message"] = "API rate limit exceeded for installation."
                st.calls.append((request.method, path, fault.status))
                return JSONResponse(body, status_code=fault.status, headers=headers)
            response = await call_next(request)
            st.calls.append((request.method, path, response.status_code))
            if emu.recorded is not None and response.headers.get("content-type", "").startswith("application/json"):
                body = b"".join([chunk async for chunk in response.body_iterator])
                emu.recorded.append((request.method, path, response.status_code, body))
                return Response(content=body, status_code=response.status_code,
                                headers={k: v for k, v in response.headers.items() if k != "content-length"})
            response.headers.setdefault("X-RateLimit-Limit", "5000")
            response.headers.setdefault("X-RateLimit-Remaining", "4999")
            response.headers.setdefault("X-GitHub-Media-Type", "github.v3; format=json")
            return response

        def base(request: Request) -> str:
            return str(request.base_url).rstrip("/")

        def public(record: dict) -> dict:  # our bookkeeping keys start with '_'
            return {k: v for k, v in record.items() if not k.startswith("_")}

        def caller(request: Request) -> str | None:
            """Who is calling: the App's bot user for an installation token, the token's owner
            for a personal token (GitHub attributes comments this way)."""
            auth = request.headers.get("authorization", "")
            if auth.startswith("token ghs_"):
                return f"{st.app_slug}[bot]"
            if auth.lower().startswith(("token ", "bearer ")) and auth.count(".") != 2:
                return st.token_user
            return None

        def app_only(request: Request) -> JSONResponse | None:
            # Only GitHub Apps may write check runs; a personal token gets 403.
            if not request.headers.get("authorization", "").startswith("token ghs_"):
                return JSONResponse({"message": "You must authenticate via a GitHub App.",
                                     "documentation_url": "https://docs.github.com/rest/checks/runs#create-a-check-run",
                                     "status": "403"}, 403)
            return None

        def not_found() -> JSONResponse:
            return JSONResponse({"message": "Not Found",
                                 "documentation_url": "https://docs.github.com/rest"}, 404)

        def repo_json(repo: Repo, b: str) -> dict:
            return {"id": repo.id, "node_id": f"R_{repo.id}", "name": repo.name,
                    "full_name": repo.full_name, "private": False, "owner": _user(repo.owner, b),
                    "html_url": f"https://github.com/{repo.full_name}", "url": f"{b}/repos/{repo.full_name}",
                    "default_branch": repo.default_branch, "fork": False,
                    "clone_url": f"https://github.com/{repo.full_name}.git"}

        def paginate(request: Request, items: list) -> JSONResponse:
            per_page = min(int(request.query_params.get("per_page", 30)), 100)
            page = max(int(request.query_params.get("page", 1)), 1)
            chunk = items[(page - 1) * per_page: page * per_page]
            last = max(1, -(-len(items) // per_page))
            links = []
            url = str(request.url.remove_query_params("page"))
            sep = "&" if "?" in url else "?"
            if page < last:
                links.append(f'<{url}{sep}page={page + 1}>; rel="next"')
                links.append(f'<{url}{sep}page={last}>; rel="last"')
            if page > 1:
                links.append(f'<{url}{sep}page=1>; rel="first"')
                links.append(f'<{url}{sep}page={page - 1}>; rel="prev"')
            headers = {"Link": ", ".join(links)} if links else {}
            return JSONResponse(chunk, headers=headers)

        @app.get("/repos/{owner}/{name}")
        def get_repo(owner: str, name: str, request: Request):
            repo = st.repo(f"{owner}/{name}")
            return repo_json(repo, base(request)) if repo else not_found()

        def pull_json(repo: Repo, p: Pull, b: str) -> dict:
            head_repo = repo_json(repo, b)
            if p.fork:
                head_repo = {**head_repo, "full_name": f"{p.user}/{repo.name}", "fork": True,
                             "owner": _user(p.user, b)}
            return {"id": p.number * 7919, "number": p.number, "state": p.state, "title": p.title,
                    "user": _user(p.user, b), "merged": p.merged, "merge_commit_sha": p.merge_sha,
                    "url": f"{b}/repos/{repo.full_name}/pulls/{p.number}",
                    "html_url": f"https://github.com/{repo.full_name}/pull/{p.number}",
                    "issue_url": f"{b}/repos/{repo.full_name}/issues/{p.number}",
                    "head": {"sha": p.head_sha, "ref": p.head_ref, "label": f"{p.user}:{p.head_ref}",
                             "repo": head_repo, "user": _user(p.user, b)},
                    "base": {"sha": p.base_sha, "ref": p.base_ref, "label": f"{repo.owner}:{p.base_ref}",
                             "repo": repo_json(repo, b), "user": _user(repo.owner, b)},
                    "changed_files": len(p.files), "draft": False,
                    "created_at": iso(p.created_at), "updated_at": iso(p.updated_at)}

        @app.get("/repos/{owner}/{name}/pulls/{number}")
        def get_pull(owner: str, name: str, number: int, request: Request):
            repo = st.repo(f"{owner}/{name}")
            if not repo or number not in repo.pulls:
                return not_found()
            return pull_json(repo, repo.pulls[number], base(request))

        @app.get("/repos/{owner}/{name}/pulls/{number}/files")
        def pull_files(owner: str, name: str, number: int, request: Request):
            repo = st.repo(f"{owner}/{name}")
            if not repo or number not in repo.pulls:
                return not_found()
            p = repo.pulls[number]
            b = base(request)
            out = []
            for f in p.files:
                blob = repo.commits[p.head_sha].get(f["filename"], b"")
                out.append({"sha": f"{abs(hash(blob)):040x}"[:40], "filename": f["filename"],
                            "status": f["status"], "additions": blob.count(b"\n"), "deletions": 0,
                            "changes": blob.count(b"\n"),
                            "blob_url": f"https://github.com/{repo.full_name}/blob/{p.head_sha}/{f['filename']}",
                            "raw_url": f"https://github.com/{repo.full_name}/raw/{p.head_sha}/{f['filename']}",
                            "contents_url": f"{b}/repos/{repo.full_name}/contents/{f['filename']}?ref={p.head_sha}",
                            "patch": ""})
            return paginate(request, out)

        @app.get("/repos/{owner}/{name}/contents/{path:path}")
        def contents(owner: str, name: str, path: str, request: Request):
            repo = st.repo(f"{owner}/{name}")
            ref = request.query_params.get("ref", repo.default_branch if repo else "")
            files = repo.commits.get(ref) if repo else None
            if files is None or path not in files:
                return not_found()
            blob = files[path]
            b = base(request)
            too_big = len(blob) > 1_000_000  # GitHub returns no content above 1 MB
            return {"type": "file", "encoding": "none" if too_big else "base64", "size": len(blob),
                    "name": path.rsplit("/", 1)[-1], "path": path,
                    "content": "" if too_big else base64.b64encode(blob).decode(),
                    "sha": f"{abs(hash(blob)):040x}"[:40], "url": f"{b}/repos/{repo.full_name}/contents/{path}?ref={ref}",
                    "git_url": None, "html_url": f"https://github.com/{repo.full_name}/blob/{ref}/{path}",
                    "download_url": f"{b}/raw/{repo.full_name}/{ref}/{path}"}

        def check_json(repo: Repo, run: dict, b: str) -> dict:
            out = {k: v for k, v in run.items() if not k.startswith("_")}
            out["output"] = {**run["output"], "annotations_count": len(repo.annotations.get(run["id"], [])),
                             "annotations_url": f"{b}/repos/{repo.full_name}/check-runs/{run['id']}/annotations"}
            out["node_id"] = f"CR_{run['id']}"
            out["url"] = f"{b}/repos/{repo.full_name}/check-runs/{run['id']}"
            out["html_url"] = f"https://github.com/{repo.full_name}/runs/{run['id']}"
            out["app"] = {"id": 1, "slug": st.app_slug, "name": "Sprout", "owner": _user(repo.owner, b)}
            return out

        def apply_check(repo: Repo, run: dict, body: dict) -> JSONResponse | None:
            output = body.get("output") or {}
            anns = output.get("annotations") or []
            if len(anns) > 50:
                return JSONResponse({"message": "Invalid request.\n\nOnly 50 annotations are allowed per request."}, 422)
            for a in anns:
                if not {"path", "start_line", "end_line", "annotation_level", "message"} <= set(a):
                    return JSONResponse({"message": "Invalid annotation", "errors": [a]}, 422)
            repo.annotations.setdefault(run["id"], []).extend(anns)
            for key in ("name", "status", "conclusion", "details_url", "external_id", "started_at", "completed_at"):
                if key in body:
                    run[key] = body[key]
            if output:
                run["output"] = {k: output.get(k, run["output"].get(k)) for k in ("title", "summary", "text")}
            if body.get("conclusion") and run.get("status") != "completed":
                run["status"] = "completed"
            if run.get("status") == "completed" and not run.get("completed_at"):
                run["completed_at"] = iso()
            return None

        @app.post("/repos/{owner}/{name}/check-runs")
        async def create_check(owner: str, name: str, request: Request):
            repo = st.repo(f"{owner}/{name}")
            if not repo:
                return not_found()
            denied = app_only(request)
            if denied:
                return denied
            body = await request.json()
            if not body.get("name") or not body.get("head_sha"):
                return JSONResponse({"message": "Invalid request.", "errors": ["name and head_sha are required"]}, 422)
            with st.lock:
                run = {"id": st.next_id(), "name": body["name"], "head_sha": body["head_sha"],
                       "status": "queued", "conclusion": None, "started_at": iso(), "completed_at": None,
                       "details_url": None, "external_id": "", "output": {"title": None, "summary": None, "text": None},
                       "check_suite": {"id": 1}, "pull_requests": []}
                err = apply_check(repo, run, body)
                if err:
                    return err
                repo.check_runs[run["id"]] = run
            return JSONResponse(check_json(repo, run, base(request)), 201)

        @app.patch("/repos/{owner}/{name}/check-runs/{run_id}")
        async def update_check(owner: str, name: str, run_id: int, request: Request):
            repo = st.repo(f"{owner}/{name}")
            if not repo or run_id not in repo.check_runs:
                return not_found()
            denied = app_only(request)
            if denied:
                return denied
            body = await request.json()
            with st.lock:
                err = apply_check(repo, repo.check_runs[run_id], body)
                if err:
                    return err
            return check_json(repo, repo.check_runs[run_id], base(request))

        @app.get("/repos/{owner}/{name}/check-runs/{run_id}")
        def get_check(owner: str, name: str, run_id: int, request: Request):
            repo = st.repo(f"{owner}/{name}")
            if not repo or run_id not in repo.check_runs:
                return not_found()
            return check_json(repo, repo.check_runs[run_id], base(request))

        @app.get("/repos/{owner}/{name}/check-runs/{run_id}/annotations")
        def list_annotations(owner: str, name: str, run_id: int, request: Request):
            repo = st.repo(f"{owner}/{name}")
            if not repo or run_id not in repo.check_runs:
                return not_found()
            return paginate(request, repo.annotations.get(run_id, []))

        @app.get("/repos/{owner}/{name}/commits/{sha}")
        def get_commit(owner: str, name: str, sha: str, request: Request):
            repo = st.repo(f"{owner}/{name}")
            if not repo or sha not in repo.commits:
                return JSONResponse({"message": f"No commit found for SHA: {sha}"}, 422)
            b = base(request)
            return {"sha": sha, "node_id": f"C_{sha[:8]}", "url": f"{b}/repos/{repo.full_name}/commits/{sha}",
                    "html_url": f"https://github.com/{repo.full_name}/commit/{sha}",
                    "commit": {"message": "commit", "tree": {"sha": sha}}, "parents": [],
                    "files": [{"filename": f, "status": "added"} for f in sorted(repo.commits[sha])]}

        @app.get("/repos/{owner}/{name}/commits/{sha}/check-runs")
        def commit_checks(owner: str, name: str, sha: str, request: Request):
            repo = st.repo(f"{owner}/{name}")
            if not repo:
                return not_found()
            wanted = request.query_params.get("check_name")
            runs = [check_json(repo, r, base(request)) for r in repo.check_runs.values()
                    if r["head_sha"] == sha and (not wanted or r["name"] == wanted)]
            per_page = min(int(request.query_params.get("per_page", 30)), 100)
            page = int(request.query_params.get("page", 1))
            return {"total_count": len(runs), "check_runs": runs[(page - 1) * per_page: page * per_page]}

        def comment_json(repo: Repo, c: dict, b: str) -> dict:
            out = {k: v for k, v in c.items() if not k.startswith("_")}
            out["url"] = f"{b}/repos/{repo.full_name}/issues/comments/{c['id']}"
            out["issue_url"] = f"{b}/repos/{repo.full_name}/issues/{c['_number']}"
            out["html_url"] = f"https://github.com/{repo.full_name}/pull/{c['_number']}#issuecomment-{c['id']}"
            out["user"] = _user(c["_author"], b, "Bot" if c["_author"].endswith("[bot]") else "User")
            return out

        @app.get("/repos/{owner}/{name}/issues/{number}")
        def get_issue(owner: str, name: str, number: int, request: Request):
            repo = st.repo(f"{owner}/{name}")
            if not repo or number not in repo.pulls:
                return not_found()
            b = base(request)
            p = repo.pulls[number]
            return {"id": number * 104729, "number": number, "title": p.title, "state": p.state,
                    "user": _user(p.user, b), "url": f"{b}/repos/{repo.full_name}/issues/{number}",
                    "html_url": f"https://github.com/{repo.full_name}/pull/{number}",
                    "pull_request": {"url": f"{b}/repos/{repo.full_name}/pulls/{number}"}}

        @app.get("/repos/{owner}/{name}/issues/{number}/comments")
        def list_comments(owner: str, name: str, number: int, request: Request):
            repo = st.repo(f"{owner}/{name}")
            if not repo:
                return not_found()
            b = base(request)
            return paginate(request, [comment_json(repo, c, b) for c in repo.comments.values()
                                      if c["_number"] == number])

        @app.post("/repos/{owner}/{name}/issues/{number}/comments")
        async def create_comment(owner: str, name: str, number: int, request: Request):
            repo = st.repo(f"{owner}/{name}")
            if not repo or number not in repo.pulls:
                return not_found()
            body = (await request.json()).get("body", "")
            if len(body) > 65536:
                return JSONResponse({"message": "Validation Failed", "errors": [
                    {"resource": "IssueComment", "code": "unprocessable", "field": "data",
                     "message": "Body is too long (maximum is 65536 characters)"}]}, 422)
            with st.lock:
                c = {"id": st.next_id(), "node_id": "IC_x", "body": body, "created_at": iso(),
                     "updated_at": iso(), "_number": number, "_author": caller(request) or "ghost"}
                repo.comments[c["id"]] = c
            return JSONResponse(comment_json(repo, c, base(request)), 201)

        @app.get("/repos/{owner}/{name}/issues/comments/{cid}")
        def get_comment(owner: str, name: str, cid: int, request: Request):
            repo = st.repo(f"{owner}/{name}")
            if not repo or cid not in repo.comments:
                return not_found()
            return comment_json(repo, repo.comments[cid], base(request))

        @app.patch("/repos/{owner}/{name}/issues/comments/{cid}")
        async def edit_comment(owner: str, name: str, cid: int, request: Request):
            repo = st.repo(f"{owner}/{name}")
            if not repo or cid not in repo.comments:
                return not_found()
            if repo.comments[cid]["_author"] != caller(request):
                return JSONResponse({"message": "Resource not accessible by integration",
                                     "documentation_url": "https://docs.github.com/rest/issues/comments#update-an-issue-comment",
                                     "status": "403"}, 403)
            body = (await request.json()).get("body", "")
            if len(body) > 65536:
                return JSONResponse({"message": "Validation Failed"}, 422)
            repo.comments[cid].update(body=body, updated_at=iso())
            return comment_json(repo, repo.comments[cid], base(request))

        @app.post("/repos/{owner}/{name}/issues/comments/{cid}/reactions")
        async def react(owner: str, name: str, cid: int, request: Request):
            repo = st.repo(f"{owner}/{name}")
            if not repo or cid not in repo.comments:
                return not_found()
            content = (await request.json()).get("content")
            if content not in {"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"}:
                return JSONResponse({"message": "Validation Failed"}, 422)
            for r in repo.reactions:
                if r["_comment"] == cid and r["content"] == content:
                    return JSONResponse(public(r), 200)
            r = {"id": st.next_id(), "content": content, "_comment": cid, "created_at": iso(),
                 "user": _user(f"{st.app_slug}[bot]", base(request), "Bot")}
            repo.reactions.append(r)
            return JSONResponse(public(r), 201)

        @app.get("/repos/{owner}/{name}/collaborators/{login}/permission")
        def permission(owner: str, name: str, login: str, request: Request):
            repo = st.repo(f"{owner}/{name}")
            if not repo:
                return not_found()
            role = repo.permissions.get(login, "read")
            legacy = {"maintain": "write", "triage": "read"}.get(role, role)
            return {"permission": legacy, "role_name": role, "user": _user(login, base(request))}

        @app.get("/orgs/{org}")
        def org(org: str, request: Request):
            if not any(o == org for o, _ in st.teams) and org not in {r.owner for r in st.repos.values()}:
                return not_found()
            b = base(request)
            return {"login": org, "id": abs(hash(org)) % 100000, "url": f"{b}/orgs/{org}", "type": "Organization"}

        @app.get("/orgs/{org}/teams/{slug}")
        def team(org: str, slug: str, request: Request):
            if (org, slug) not in st.teams:
                return not_found()
            b = base(request)
            return {"id": abs(hash((org, slug))) % 100000, "slug": slug, "name": slug,
                    "url": f"{b}/orgs/{org}/teams/{slug}", "organization": {"login": org}}

        @app.get("/orgs/{org}/teams/{slug}/memberships/{login}")
        def membership(org: str, slug: str, login: str, request: Request):
            if request.headers.get("authorization", "").startswith("token ghs_") and \
                    "members" not in st.installation_permissions:
                return JSONResponse({"message": "Resource not accessible by integration",
                                     "documentation_url": "https://docs.github.com/rest/teams/members#get-team-membership-for-a-user",
                                     "status": "403"}, 403)
            if login not in st.teams.get((org, slug), set()):
                return not_found()
            return {"state": "active", "role": "member",
                    "url": f"{base(request)}/orgs/{org}/teams/{slug}/memberships/{login}"}

        @app.get("/repos/{owner}/{name}/installation")
        def repo_installation(owner: str, name: str, request: Request):
            for iid, account in st.installations.items():
                if account == owner:
                    return {"id": iid, "account": _user(owner, base(request)), "app_id": 1}
            return not_found()

        @app.post("/app/installations/{iid}/access_tokens")
        def access_token(iid: int, request: Request):
            auth = request.headers.get("authorization", "")
            if not auth.lower().startswith("bearer ") or auth.count(".") != 2:
                return JSONResponse({"message": "A JSON web token could not be decoded"}, 401)
            if iid not in st.installations:
                return not_found()
            token = f"ghs_{st.next_id():036d}"
            expires = time.time() + 3600
            st.tokens[token] = expires
            return JSONResponse({"token": token, "expires_at": iso(expires),
                                 "permissions": dict(st.installation_permissions),
                                 "repository_selection": "all"}, 201)

        @app.get("/app/hook/deliveries")
        def deliveries(request: Request):
            return paginate(request, st.hook_deliveries)

        @app.post("/app/hook/deliveries/{did}/attempts")
        def redeliver(did: int):
            if not any(d["id"] == did for d in st.hook_deliveries):
                return not_found()
            st.redelivery_requests.append(did)
            return JSONResponse({}, 202)

        @app.get("/user")
        def me(request: Request):
            login = caller(request)
            if login is None or login.endswith("[bot]"):
                return JSONResponse({"message": "Resource not accessible by integration"}, 403)
            return _user(login, base(request))

        @app.get("/app")
        def the_app(request: Request):
            auth = request.headers.get("authorization", "")
            if not auth.lower().startswith("bearer ") or auth.count(".") != 2:
                return JSONResponse({"message": "A JSON web token could not be decoded"}, 401)
            b = base(request)
            return {"id": 1, "slug": st.app_slug, "node_id": "A_1", "name": "Sprout",
                    "owner": _user("octo-org", b, "Organization"), "description": "",
                    "external_url": "https://example.com", "html_url": f"https://github.com/apps/{st.app_slug}",
                    "created_at": iso(), "updated_at": iso(), "permissions": dict(st.installation_permissions),
                    "events": ["pull_request", "issue_comment"]}

        @app.post("/repos/{owner}/{name}/statuses/{sha}")
        async def create_status(owner: str, name: str, sha: str, request: Request):
            repo = st.repo(f"{owner}/{name}")
            if not repo:
                return not_found()
            body = await request.json()
            if body.get("state") not in ("error", "failure", "pending", "success"):
                return JSONResponse({"message": "Validation Failed", "errors": [
                    {"resource": "Status", "field": "state", "code": "custom"}]}, 422)
            if len(body.get("description") or "") > 140:
                return JSONResponse({"message": "Validation Failed", "errors": [
                    {"resource": "Status", "field": "description", "code": "custom",
                     "message": "description is too long (maximum is 140 characters)"}]}, 422)
            b = base(request)
            with st.lock:
                status = {"id": st.next_id(), "node_id": "SC_x", "state": body["state"],
                          "description": body.get("description"), "target_url": body.get("target_url"),
                          "context": body.get("context") or "default", "created_at": iso(), "updated_at": iso(),
                          "url": f"{b}/repos/{repo.full_name}/statuses/{sha}", "_sha": sha,
                          "avatar_url": None, "creator": _user(caller(request) or "ghost", b)}
                repo.statuses.append(status)
            return JSONResponse(public(status), 201)

        @app.get("/repos/{owner}/{name}/commits/{sha}/statuses")
        def list_statuses(owner: str, name: str, sha: str, request: Request):
            repo = st.repo(f"{owner}/{name}")
            if not repo:
                return not_found()
            return paginate(request, [public(x) for x in reversed(repo.statuses) if x["_sha"] == sha])

        @app.get("/rate_limit")
        def rate_limit():
            now = int(time.time()) + 3600
            core = {"limit": 5000, "remaining": 4999, "reset": now, "used": 1}
            return {"resources": {"core": core}, "rate": core}

        # Last, so that every API route above wins: git's dumb HTTP protocol is plain files.
        @app.get("/{owner}/{repo_git}/{path:path}")
        def git_files(owner: str, repo_git: str, path: str):
            bare = st.git.get(f"{owner}/{repo_git.removesuffix('.git')}") if repo_git.endswith(".git") else None
            if bare is None:
                return not_found()
            target = (bare / path).resolve()
            if not target.is_relative_to(bare.resolve()) or not target.is_file():
                return Response(status_code=404)
            return FileResponse(target, media_type="application/octet-stream")

        return app
