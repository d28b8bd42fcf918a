"""The package as a user meets it: a light `import snnl`, the public names and their API page,
the README's Python examples, and a wheel that installs on its own."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import types
import zipfile
from pathlib import Path

import pytest

import snnl
from benchmarks.bench_import import HEAVY

REPO = Path(__file__).resolve().parents[1]


def python_blocks(markdown: str) -> list[str]:
    """The ```python fenced blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)


def test_import_snnl_loads_none_of_the_heavy_packages():
    code = "import json, sys, snnl; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    loaded = {m.split(".")[0] for m in json.loads(out.stdout)}
    assert "torch" in loaded and "snnl" in loaded
    assert not loaded & set(HEAVY), f"import snnl loads {sorted(loaded & set(HEAVY))}"
    assert {"faiss", "torchvision", "matplotlib", "sklearn", "PIL"} <= set(HEAVY)


def test_the_heavy_packages_still_load_where_they_are_used():
    """A dataset read through torchvision and a Deep k-NN index through faiss, in a fresh
    interpreter: the imports moved into the functions that use them."""
    code = ("import sys, numpy as np, snnl\n"
            "snnl.DkNN(k=1).fit([np.eye(3, dtype=np.float32)], np.arange(3))\n"
            "from snnl.data import _torchvision_classes\n"
            "assert _torchvision_classes()['notmnist'].__mro__[1].__name__ == 'MNIST'\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'faiss', 'torchvision'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['faiss', 'torchvision']"


def test_all_lists_every_public_name_of_the_package():
    public = {n for n, v in vars(snnl).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    assert set(snnl.__all__) == public and len(snnl.__all__) == len(set(snnl.__all__))


def test_the_api_page_documents_every_public_name():
    page = (REPO / "book" / "api.md").read_text()
    documented = re.findall(r"^\.\. auto(?:function|class|data|exception):: snnl\.(\w+)", page, flags=re.M)
    assert sorted(documented) == sorted(snnl.__all__)
    toc = (REPO / "_toc.yml").read_text()
    assert re.search(r"^\s*- file: api\s*$", toc, flags=re.M)
    config = (REPO / "_config.yml").read_text()
    assert "sphinx.ext.autodoc" in config and "sphinx.ext.napoleon" in config


def test_the_readme_python_blocks_run(tmp_path, monkeypatch, capsys):
    """Every ```python block of the README, in order, in an empty folder."""
    blocks = python_blocks((REPO / "README.md").read_text())
    assert any("SNNLRegularizer" in b and "resnet18" in b for b in blocks)
    monkeypatch.chdir(tmp_path)
    for k, code in enumerate(blocks):
        exec(compile(code, f"README.md python block {k + 1}", "exec"), {"__name__": "__main__"})
    printed = capsys.readouterr().out
    assert "'layer1'" in printed and "'layer3'" in printed  # the regulariser's losses and temperatures


def _built(tmp_path: Path) -> tuple[Path, Path]:
    """The sdist of the working tree's files that git tracks or would track, and the wheel built
    from that sdist (as `python -m build` does), through setuptools' PEP 517 hooks."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout")
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    src, dist = tmp_path / "src", tmp_path / "dist"
    for f in filter(None, files):
        if (REPO / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, src / f)
    hook = "import sys; from setuptools import build_meta as b; print(getattr(b, sys.argv[1])(sys.argv[2]))"
    run = lambda what, cwd: subprocess.run([sys.executable, "-c", hook, what, str(dist)], cwd=cwd,  # noqa: E731
                                           capture_output=True, text=True, check=True).stdout.split()[-1]
    sdist = dist / run("build_sdist", src)
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    wheel = dist / run("build_wheel", tmp_path / "unpacked" / sdist.name.removesuffix(".tar.gz"))
    return sdist, wheel


@pytest.mark.slow
def test_the_wheel_installs_on_its_own_and_runs_the_readme_examples(tmp_path):
    sdist, wheel = _built(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(f"snnl-{snnl.__version__}.dist-info/METADATA").decode()
    assert {"snnl/regularizer.py", "snnl/py.typed", "snnl/experiments/__init__.py",
            f"snnl-{snnl.__version__}.dist-info/licenses/LICENSE"} <= names
    assert not any(n.startswith(("tests/", "benchmarks/", "book/", "results/")) for n in names)
    for field in ("License-Expression: MIT", "Classifier: Typing :: Typed", "Project-URL: Paper",
                  "Requires-Python: >=3.10", "Requires-Dist: torch", "Description-Content-Type: text/markdown"):
        assert field in meta, field
    with tarfile.open(sdist) as tar:
        assert {"LICENSE", "README.md", "pyproject.toml"} <= {Path(n).name for n in tar.getnames()}

    # a fresh environment: the wheel alone (--no-deps), its dependencies seen through a .pth file
    # pointing at this interpreter's site-packages (nothing downloaded)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, capture_output=True)
    where = subprocess.run([py, "-I", "-c", "import snnl; print(snnl.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(site), where  # the installed copy, not the repository's
    blocks = [b for b in python_blocks((REPO / "README.md").read_text())
              if "soft_nearest_neighbor_loss" in b or "SNNLRegularizer" in b]
    assert len(blocks) == 2  # "The package in five lines" and "The regulariser on any model"
    for code in blocks:
        out = subprocess.run([py, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
    cli = subprocess.run([venv / "bin" / "snnl", "--help"], capture_output=True, text=True)
    assert cli.returncode == 0 and "train" in cli.stdout
