"""The pinned environment is consistent: constraints.txt is the one source of truth for
versions; environment.yml, pyproject.toml and the running interpreter agree with it."""

from __future__ import annotations

import re
import sys
from importlib import metadata

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import REPO

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")


def pins_from_lines(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert m, f"not an exact pin: {line!r}"
        name = canonicalize_name(m[1])
        assert name not in pins, f"{name} pinned twice"
        pins[name] = m[2]
    return pins


@pytest.fixture(scope="module")
def constraints() -> dict[str, str]:
    return pins_from_lines((REPO / "constraints.txt").read_text().splitlines())


@pytest.fixture(scope="module")
def env_yml() -> dict:
    return yaml.safe_load((REPO / "environment.yml").read_text())


@pytest.fixture(scope="module")
def env_pins(env_yml) -> dict[str, str]:
    pip = [d for d in env_yml["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "environment.yml needs one pip: section"
    return pins_from_lines(pip[0]["pip"])


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def declared_requirements(project) -> list[Requirement]:
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [Requirement(r) for r in extra]
    return [r for r in reqs if canonicalize_name(r.name) != canonicalize_name(project["name"])]


def test_environment_yml_pins_equal_constraints(env_pins, constraints):
    assert env_pins, "environment.yml pins nothing"
    wrong = {n: (v, constraints.get(n)) for n, v in env_pins.items() if constraints.get(n) != v}
    assert not wrong, f"environment.yml vs constraints.txt (name: (yml, constraints)): {wrong}"


def test_environment_yml_installs_the_project_and_a_supported_python(env_yml, project):
    deps = env_yml["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "-e ." in [str(p).strip() for p in pip]
    python = next(str(d) for d in deps if isinstance(d, str) and re.match(r"python[=<>]", d))
    version = re.search(r"(\d+\.\d+)", python)[1]
    assert Version(version) in SpecifierSet(project["requires-python"])


def test_torch_and_torchvision_are_a_matched_pair(constraints, env_pins):
    torch_v, tv_v = Version(constraints["torch"]), Version(constraints["torchvision"])
    # torchvision 0.(N+15) is built against torch 2.N (0.16 <-> 2.1, ..., 0.29 <-> 2.14)
    assert torch_v.major == 2 and tv_v.major == 0 and tv_v.minor == torch_v.minor + 15, (torch_v, tv_v)
    assert env_pins["torch"] == constraints["torch"] and env_pins["torchvision"] == constraints["torchvision"]


def test_every_dependency_is_pinned_and_listed(project, constraints, env_pins):
    for req in declared_requirements(project):
        name = canonicalize_name(req.name)
        assert name in constraints, f"{req.name} (pyproject) is not pinned in constraints.txt"
        assert name in env_pins, f"{req.name} (pyproject) is not listed in environment.yml"
        assert req.specifier.contains(constraints[name], prereleases=True), \
            f"pin {name}=={constraints[name]} does not satisfy pyproject's {req}"


def test_installed_versions_match_the_pins(project, constraints):
    """The interpreter running the tests has the pinned versions (``make install`` re-syncs)."""
    wrong = {}
    for req in declared_requirements(project):
        name = canonicalize_name(req.name)
        try:
            have = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            wrong[name] = ("missing", constraints[name])
            continue
        if Version(have.public) != Version(Version(constraints[name]).public):  # ignore +cpu, +cu130
            wrong[name] = (str(have), constraints[name])
    assert not wrong, f"installed vs pinned (run `make install`): {wrong} [{sys.executable}]"
