"""The GitHub workflows parse and run the project's own commands."""

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def _load(name):
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True
    data["on"] = data.pop(True, data.get("on"))
    return data


def _runs(job):
    return "\n".join(step.get("run", "") for step in job["steps"])


@pytest.mark.parametrize("name", ["cpu.yml", "gpu.yml"])
def test_workflow_is_valid(name):
    wf = _load(name)
    assert wf["name"] and wf["on"] and wf["jobs"]
    for job in wf["jobs"].values():
        assert job["runs-on"] and job["steps"]
        assert job["steps"][0]["uses"].startswith("actions/checkout@")
        for step in job["steps"]:
            assert ("run" in step) != ("uses" in step), step


def test_cpu_workflow_runs_tests_and_book_and_reports_failures():
    job = next(iter(_load("cpu.yml")["jobs"].values()))
    runs = _runs(job)
    assert "make test" in runs and "make -j2 book" in runs and "make site-check" in runs and "pipefail" in runs
    setup = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python@")]
    assert setup and setup[0]["with"]["cache"] == "pip"
    failure = [s for s in job["steps"] if s.get("if") == "failure()"]
    assert failure and "small-failed" in failure[0]["with"]["path"]


def test_gpu_workflow_reproduces_on_a_self_hosted_gpu_runner():
    job = next(iter(_load("gpu.yml")["jobs"].values()))
    assert "self-hosted" in job["runs-on"] and "gpu" in job["runs-on"]
    assert "make reproduce" in _runs(job)
    upload = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload and "results/" in upload[0]["with"]["path"] and ".ipynb" in upload[0]["with"]["path"]


def test_ci_script_calls_the_readme_commands():
    text = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in text and "make test" in text and "make -j2 book" in text
