"""Operator commands use the local stack only when no project is named at all."""

import os

import pytest

from oddsbatch import envfile


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    for name in envfile.PROJECT_VARIABLES + ("STORAGE_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "local.env").write_text("ODDSBATCH_PROJECT=test-project\nSTORAGE_EMULATOR_HOST=http://127.0.0.1:1\n")
    return tmp_path


def test_no_project_named_uses_the_local_stack(state_dir):
    assert envfile.use_local_stack_if_unconfigured(state_dir)
    assert os.environ["ODDSBATCH_PROJECT"] == "test-project"
    line = envfile.target_line("reconcile", True, state_dir)
    assert "project test-project on the local stack" in line


@pytest.mark.parametrize("variable", envfile.PROJECT_VARIABLES)
def test_any_named_project_wins_over_the_local_stack(state_dir, monkeypatch, variable):
    monkeypatch.setenv(variable, "prod-project")
    assert not envfile.use_local_stack_if_unconfigured(state_dir)
    assert "STORAGE_EMULATOR_HOST" not in os.environ  # the local endpoints were never read
    assert envfile.target_line("status", False, state_dir) == "oddsbatch status: project prod-project on Google Cloud"


def test_the_target_line_names_emulators_the_caller_chose(state_dir, monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "p")
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")
    assert "emulators named by FIRESTORE_EMULATOR_HOST" in envfile.target_line("reconcile", False, state_dir)
