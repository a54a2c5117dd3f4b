import pytest

from bot.settings import Settings, SettingsError

KEY = "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n"


def test_token_mode_defaults():
    s = Settings.from_env({"SPROUT_WEBHOOK_SECRET": "s", "SPROUT_GITHUB_TOKEN": "t"})
    assert not s.app_mode and s.api_url == "https://api.github.com"
    assert str(s.database_path) == ".sprout/bot.db" and s.trusted_teams == ()


def test_app_mode_with_key_file(tmp_path):
    key = tmp_path / "key.pem"
    key.write_text(KEY)
    s = Settings.from_env({"SPROUT_WEBHOOK_SECRET": "s", "SPROUT_GITHUB_APP_ID": "12",
                           "SPROUT_GITHUB_PRIVATE_KEY_PATH": str(key),
                           "SPROUT_GITHUB_API_URL": "https://ghe.example.com/api/v3/",
                           "SPROUT_TRUSTED_TEAMS": "org/a, org/b"})
    assert s.app_mode and s.app_id == 12 and s.private_key == KEY
    assert s.api_url == "https://ghe.example.com/api/v3" and s.trusted_teams == ("org/a", "org/b")


@pytest.mark.parametrize("env,fragment", [
    ({}, "SPROUT_WEBHOOK_SECRET is not set"),
    ({"SPROUT_WEBHOOK_SECRET": "s"}, "no GitHub credentials"),
    ({"SPROUT_WEBHOOK_SECRET": "s", "SPROUT_GITHUB_TOKEN": "t", "SPROUT_GITHUB_APP_ID": "1",
      "SPROUT_GITHUB_PRIVATE_KEY": KEY}, "not both"),
    ({"SPROUT_WEBHOOK_SECRET": "s", "SPROUT_GITHUB_APP_ID": "1"}, "needs SPROUT_GITHUB_PRIVATE_KEY"),
    ({"SPROUT_WEBHOOK_SECRET": "s", "SPROUT_GITHUB_APP_ID": "x", "SPROUT_GITHUB_PRIVATE_KEY": KEY}, "must be a number"),
    ({"SPROUT_WEBHOOK_SECRET": "s", "SPROUT_GITHUB_APP_ID": "1", "SPROUT_GITHUB_PRIVATE_KEY": "nope"}, "not PEM"),
    ({"SPROUT_WEBHOOK_SECRET": "s", "SPROUT_GITHUB_APP_ID": "1", "SPROUT_GITHUB_PRIVATE_KEY_PATH": "/nope"}, "PRIVATE_KEY_PATH"),
    ({"SPROUT_WEBHOOK_SECRET": "s", "SPROUT_GITHUB_TOKEN": "t", "SPROUT_DATABASE_URL": "postgres://x"}, "only sqlite"),
    ({"SPROUT_WEBHOOK_SECRET": "s", "SPROUT_GITHUB_TOKEN": "t", "SPROUT_TRUSTED_TEAMS": "justateam"}, "org/team-slug"),
])
def test_clear_errors(env, fragment):
    with pytest.raises(SettingsError, match=fragment):
        Settings.from_env(env)


def test_all_problems_reported_at_once():
    with pytest.raises(SettingsError) as e:
        Settings.from_env({"SPROUT_DATABASE_URL": "mysql://x"})
    assert str(e.value).count("\n  - ") == 3


def test_bot_serve_exits_2_on_bad_settings():
    import subprocess, sys, os
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPROUT_")}
    p = subprocess.run([sys.executable, "-m", "pipeline.cli", "bot", "serve"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "SPROUT_WEBHOOK_SECRET" in p.stderr


def test_clone_url_follows_the_api_url():
    base = {"SPROUT_WEBHOOK_SECRET": "s", "SPROUT_GITHUB_TOKEN": "t"}
    assert Settings.from_env(base).clone_url("o/r") == "https://github.com/o/r.git"
    ghe = Settings.from_env({**base, "SPROUT_GITHUB_API_URL": "https://ghe.example.com/api/v3"})
    assert ghe.clone_url("o/r") == "https://ghe.example.com/o/r.git"
    own = Settings.from_env({**base, "SPROUT_GIT_URL": "ssh://git@mirror/{repo}.git", "SPROUT_RUNS_ROOT": "/shared/runs"})
    assert own.clone_url("o/r") == "ssh://git@mirror/o/r.git" and own.runs_root == "/shared/runs"
    assert "{git_url}" in own.retrain_entrypoint and "--base {base_sha}" in own.preview_entrypoint


def test_one_settings_table_for_readme_help_and_code():
    """The README's table is the table in bot/settings_table.py, `sprout bot serve --help` prints
    every name in it, and every variable Settings reads is in it."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    from bot import settings_table
    root = Path(__file__).resolve().parents[2]
    assert settings_table.markdown() in (root / "README.md").read_text()
    names = set(re.findall(r"[A-Z][A-Z_]{4,}", " ".join(n for n, _ in settings_table.SETTINGS)))
    helptext = subprocess.run([sys.executable, "-m", "pipeline.cli", "bot", "serve", "--help"], cwd=root,
                              capture_output=True, text=True).stdout
    assert all(n in helptext for n in names), sorted(n for n in names if n not in helptext)
    read = set(re.findall(r'get\("([A-Z_]+)"\)', (root / "bot/settings.py").read_text()))
    assert read <= names, read - names
    assert {"SPROUT_DOCUMENT_HOSTS", "SPROUT_TEACHER_API_KEY"} <= names  # what the bot passes to jobs
