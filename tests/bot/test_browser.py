"""The status page and the HTML report in headless Chromium: they load, show the key numbers,
and a screenshot is written to test-artifacts/."""

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from pipeline import report as rpt
from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(not CHROMIUM, reason="Debian chromium not installed (.ci/run installs it)")
ARTIFACTS = ROOT / "test-artifacts"


def chromium(url: str, screenshot: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-quic", f"--user-data-dir={profile}", "--window-size=1200,900"]
        subprocess.run(flags + [f"--screenshot={ARTIFACTS / screenshot}", url], capture_output=True, timeout=120)
        dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert (ARTIFACTS / screenshot).stat().st_size > 1000
    return dom.stdout


def test_report_html_in_chromium(tmp_path):
    long_path = "knowledge/science/earth/hydrology/groundwater/aquifers/recharge_and_discharge/qna.yaml"
    report = {"run_id": "run-42", "verdict": "accepted", "reasons": [],
              "taxonomy": {"path": "taxonomy", "ref": "abc123", "base_ref": None},
              "student": {"name": "tiny (random init)", "pretrained": False},
              "teacher": {"name": "offline (rule-based, no model)", "smoke": True}, "judge": None,
              "recipe": {"name": "tiny", "train_layers": 0, "layers": 2, "text": "recipe tiny (every weight)"},
              "started_from": {"kind": "base", "model": "base"}, "new_model": "new",
              "leaves": [{"path": long_path, "class": "Improved", "changed": True,
                          "samples_generated": 44, "samples_kept": 14, "base_score": 0.012, "deployed_score": 0.012,
                          "new_score": 0.317, "delta": 0.305, "interval": [0.2, 0.41], "constant_score": 0.05,
                          "examples": [],
                          "heldout": [{"question": "What is evaporation?", "reference": "Water turning into vapour.",
                                       "deployed_answer": "", "new_answer": "Evaporation is water turning into vapour.",
                                       "deployed_score": 0.0, "new_score": 0.6}]}],
              "forgetting": {"base": 7.64, "new": 7.1, "threshold": 0.1, "passed": True},
              "funnel": {"in": 212, "out": 61, "filters": {"exact_dedup": 89, "near_dedup": 57}},
              "training": {"knowledge": [{"step": i, "loss": 7 - i / 20} for i in range(1, 40)],
                           "skills": [{"step": i, "loss": 6 - i / 20} for i in range(1, 20)]},
              "timings": {"train": 52.0}}
    page = tmp_path / "report.html"
    page.write_text(rpt.html_page(report))
    dom = chromium(page.as_uri(), "report.png")
    assert "Sprout retrain: accepted" in dom and "0.317" in dom and long_path in dom  # never cut
    assert "Smoke run, not evidence" in dom and "tiny (random init)" in dom
    assert "<polyline" in dom and "212 generated" in dom
    assert 'class="phase-boundary"' in dom and 'class="xtick"' in dom and ">skills<" in dom
    assert "Evaporation is water turning into vapour." in dom and "+0.305 [+0.200, +0.410]" in dom


def test_status_page_in_chromium(bot, emulator):
    bot.deliver("star", {"action": "created", "repository": {"full_name": "x/y"}}, delivery="visible-delivery")
    job = bot.store.add_job("octo-org/taxonomy", 7, "a" * 40, "retrain", 42)
    bot.store.update_job(job, status="succeeded", stage="report", verdict="accepted")
    bot.store.add_job("octo-org/taxonomy", 8, "c" * 40, "preview", 42)
    bot.wait_idle()
    dom = chromium(f"http://127.0.0.1:{bot.port}/", "status-page.png")
    assert "visible-delivery" in dom and "ignored" in dom and "aaaaaaa" in dom and "#7" in dom
    assert "<td>report</td><td>accepted</td>" in dom and "<td>preview</td>" in dom
    assert f'href="{emulator.url}/octo-org/taxonomy/pull/7"' in dom  # links to the PR and commit
    assert f'href="{emulator.url}/octo-org/taxonomy/commit/{"a" * 40}"' in dom
