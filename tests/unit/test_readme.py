"""README's two commands are the ones that are run: CI runs the test command, the quickstart test the other."""

from pathlib import Path

from tests.e2e.test_quickstart import readme_commands

ROOT = Path(__file__).resolve().parents[2]


def test_readme_has_two_commands_a_start_and_the_suite():
    start, test = readme_commands()
    assert start.split()[0] == "scripts/start" and test == "scripts/test"


def test_ci_runs_the_readme_test_command_with_the_lab_required():
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[1] in [line.strip() for line in ci.splitlines()]
    assert "export CARPWEB_REQUIRE_LAB=1" in ci
