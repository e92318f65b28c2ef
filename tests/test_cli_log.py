"""The command line's log: what it records, and how an unexpected error reaches the user."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from app.cli import main as cli_main


def test_a_command_is_logged_by_name_without_its_arguments(
    hearth_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main.main(["history", "search", "my secret prompt text"]) == 0
    log = (hearth_home / "logs" / "hearth.log").read_text()
    assert "command: history" in log
    assert "secret" not in log


def test_an_unexpected_error_is_one_sentence_naming_the_log_with_the_traceback_in_it(
    hearth_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise RuntimeError("a bug in a handler")

    parser = argparse.ArgumentParser(prog="hearth")
    parser.set_defaults(handler=broken, command="doctor")
    monkeypatch.setattr(cli_main, "build_parser", lambda: parser)

    assert cli_main.main([]) == 1
    err = capsys.readouterr().err
    log_file = hearth_home / "logs" / "hearth.log"
    assert "unexpected error (RuntimeError: a bug in a handler)" in err
    assert str(log_file) in err
    assert "Traceback" not in err
    log = log_file.read_text()
    assert "command doctor crashed" in log
    assert "Traceback" in log and "a bug in a handler" in log
