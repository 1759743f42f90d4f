"""What a newcomer installs: the pinned ranges hold what the tests run on, and CI does not hide
a broken install."""

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {Requirement(r).name: Requirement(r) for r in project["dependencies"]}


def test_gsplat_is_pinned_to_a_tested_range_that_holds_the_installed_version():
    req = _requirements()["gsplat"]
    assert any(s.operator in ("<", "<=", "~=", "==") for s in req.specifier), "gsplat needs an upper bound"
    assert req.specifier.contains(version("gsplat"))


def test_ci_fails_on_a_broken_install():
    script = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^set -[a-z]*e", script, re.M)
    checks = [line for line in script.splitlines() if "pip check" in line and not line.lstrip().startswith("#")]
    assert checks and all("||" not in line for line in checks)
