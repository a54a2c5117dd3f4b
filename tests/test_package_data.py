"""The data the code opens ships inside the package and is read through importlib.resources; one
version, in one place."""

import ast
import http.server
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pipeline
from pipeline.package_data import DATA, local_path, resource

ROOT = Path(__file__).resolve().parents[1]


def test_every_named_resource_is_there_and_read_through_importlib_resources():
    for name in DATA:
        node = resource(name)
        assert node.is_dir() or node.read_bytes(), name
    assert sorted(p.name for p in resource("schemas").iterdir()) == ["v1", "v2", "v3"]
    assert local_path("probe").read_text(encoding="utf-8").strip()
    from pipeline.taxonomy.schema import all_schemas
    assert len(all_schemas()) == 9


def test_no_module_reads_data_beside_its_source_file():
    # A path built from __file__ works in a checkout and breaks in a wheel on a zip import or when
    # the data is not listed; package_data.py is the one way in. (teachers.py hashes its own code.)
    allowed = {"pipeline/sdg/teachers.py"}
    offenders = []
    for py in sorted([*ROOT.joinpath("pipeline").rglob("*.py"), *ROOT.joinpath("bot").rglob("*.py")]):
        rel = py.relative_to(ROOT).as_posix()
        if rel not in allowed and re.search(r"\b__file__\b", py.read_text(encoding="utf-8")):
            offenders.append(rel)
    assert offenders == [], f"use pipeline.package_data instead of __file__ in {offenders}"


def test_package_data_globs_cover_every_named_resource():
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["pipeline"]
    pkg = ROOT / "pipeline"
    shipped = {p for g in globs for p in pkg.glob(g)}
    for name, rel in DATA.items():
        target = pkg / rel
        files = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
        assert files and all(f in shipped for f in files), f"{name}: {rel} not covered by {globs}"


def test_the_wheel_holds_every_tracked_file_and_the_data(tmp_path):
    # Built from a copy of the tracked files, so no build/ or egg-info lands in the checkout.
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file() and not rel.startswith(("tests/", "bench/", "docs/")):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(tmp_path), str(src)],
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob("sprout-*.whl"))
    out = subprocess.run([sys.executable, ".ci/wheel_files.py", str(wheel)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"sprout-{pipeline.__version__}-" in wheel.name


def test_one_version_in_one_place():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pipeline.__version__"}
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == f"sprout {pipeline.__version__}"
    literal = re.compile(r"""["']\d+\.\d+\.\d+["']""")
    tree = ast.parse((ROOT / "pipeline/__init__.py").read_text())
    assert any(isinstance(n, ast.Assign) and n.targets[0].id == "__version__" for n in tree.body)
    for py in [ROOT / "bot/github.py", ROOT / "pipeline/run.py", ROOT / "pipeline/cli/__init__.py"]:
        assert not literal.search(py.read_text()), f"a version literal in {py}"


def test_report_names_the_version():
    from pipeline.report import provenance
    line = provenance({"student": {"name": "tiny", "pretrained": False}, "sprout": pipeline.__version__})
    assert f"**Sprout:** {pipeline.__version__}" in line


def test_the_bot_sends_its_version_as_user_agent():
    from bot.github import GitHub
    from bot.settings import Settings

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("User-Agent"))
            body = json.dumps({"login": "octo", "id": 1, "type": "User"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = Settings(webhook_secret="s", github_token="t",
                            api_url=f"http://127.0.0.1:{server.server_address[1]}")
        assert GitHub(settings).login() == "octo"
    finally:
        server.shutdown()
    assert seen == [f"sprout-bot/{pipeline.__version__}"]
