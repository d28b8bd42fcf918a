"""The package as a user meets it: a light `import snnl`, the public names and their API page,
the README's Python examples, and a wheel that installs on its own."""

from __future__ import annotations

import json
import os
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


@pytest.fixture(scope="module")
def fresh_import() -> subprocess.CompletedProcess:
    """One fresh interpreter (for the two tests below): ``import snnl`` and the modules loaded
    then (a line of JSON); then a Deep k-NN index through faiss and a dataset class of torchvision,
    and which of the two packages are loaded after that (a second line)."""
    code = ("import json, sys, snnl\n"
            "print(json.dumps(sorted(sys.modules)))\n"
            "import numpy as np\n"
            "snnl.DkNN(k=1).fit([np.eye(3, dtype=np.float32)], np.arange(3))\n"
            "from snnl.data import _torchvision_classes\n"
            "assert _torchvision_classes()['notmnist'].__mro__[1].__name__ == 'MNIST'\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'faiss', 'torchvision'}))")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)


def test_import_snnl_loads_none_of_the_heavy_packages(fresh_import):
    loaded = {m.split(".")[0] for m in json.loads(fresh_import.stdout.splitlines()[0])}
    assert "torch" in loaded and "snnl" in loaded
    assert not loaded & set(HEAVY), f"import snnl loads {sorted(loaded & set(HEAVY))}"
    assert {"faiss", "torchvision", "matplotlib", "sklearn", "PIL"} <= set(HEAVY)


def test_the_heavy_packages_still_load_where_they_are_used(fresh_import):
    """A dataset read through torchvision and a Deep k-NN index through faiss, in a fresh
    interpreter: the imports moved into the functions that use them."""
    assert fresh_import.returncode == 0, fresh_import.stderr[-3000:]
    assert fresh_import.stdout.splitlines()[1] == "['faiss', 'torchvision']"


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


@pytest.mark.slow(seconds=9)
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
    blocks = [b for b in python_blocks((REPO / "README.md").read_text())
              if "soft_nearest_neighbor_loss" in b or "SNNLRegularizer" in b]
    assert len(blocks) == 2  # "The package in five lines" and "The regulariser on any model"
    # one interpreter of the venv runs both blocks, each in a namespace of its own, then says
    # where its snnl came from
    code = "".join(f"exec(compile({b!r}, 'README block {k + 1}', 'exec'), {{}})\n" for k, b in enumerate(blocks))
    out = subprocess.run([py, "-I", "-c", code + "import snnl; print(snnl.__file__)"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    where = out.stdout.strip().splitlines()[-1]
    assert Path(where).is_relative_to(site), where  # the installed copy, not the repository's
    cli = subprocess.run([venv / "bin" / "snnl", "--help"], capture_output=True, text=True)
    assert cli.returncode == 0 and "train" in cli.stdout


# ---- a light install: the core needs torch, numpy and tqdm; the rest comes with extras -----------------
CORE = {"torch", "numpy", "tqdm"}
EXTRAS = ("faiss", "sklearn", "matplotlib", "scipy", "pytorch_ood")  # the optional packages, by import name

# run in a fresh interpreter in which the packages named in BLOCKED cannot be imported, as if absent:
# None in sys.modules (import raises ModuleNotFoundError, importlib.util.find_spec finds nothing)
BLOCKER = """
import sys
BLOCKED = {blocked!r}
sys.modules.update(dict.fromkeys(BLOCKED))
"""

LIGHT = """
import io, json, tempfile, contextlib
import torch, torch.nn as nn, torch.nn.functional as F
import snnl
from snnl.extras import MissingExtra

loaded = lambda: sorted(m.split(".")[0] for m, v in sys.modules.items() if v is not None and m.split(".")[0] in BLOCKED)
out = {"loaded": loaded()}
x, y = torch.randn(40, 6), torch.arange(40) % 4
out["loss"] = float(snnl.soft_nearest_neighbor_loss(x, y, 10.0)) + float(snnl.SoftNearestNeighborLoss(10.0)(x, y))
out["entanglement"] = snnl.entanglement(x, y).value
out["triplet"] = float(snnl.triplet_loss(x, y))
model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
with snnl.SNNLRegularizer(model, ["1"], temperature=10.0) as reg:
    for _ in range(2):
        loss = F.cross_entropy(model(x), y) - 0.1 * reg(y)
        opt.zero_grad(); loss.backward(); opt.step()
out["regulariser"] = float(reg.losses["1"])
images = torch.rand(40, 6)
out["attacks"] = [float((a(images, y) - images).abs().max()) for a in (snnl.FGSM(model, 0.1),
                  snnl.BIM(model, 0.1, 0.05, 3), snnl.PGD(model, 0.1, 0.05, 3, generator=0))]
out["features"] = [f.shape[1] for f in snnl.extract_features(model, x, layers=["1", "logits"])]
data = snnl.Dataset("mine", torch.rand(64, 1, 28, 28), torch.arange(64) % 10, torch.rand(16, 1, 28, 28),
                    torch.arange(16) % 10, [str(i) for i in range(10)])
cfg = snnl.TrainConfig(dataset="mine", steps=2, batch_size=32, alpha=1.0, eval_every=2, device="cpu")
with contextlib.redirect_stderr(io.StringIO()):
    out["train"] = snnl.train.train(cfg, data=data, progress=False).metrics["test_accuracy"]
errors = {}
def error(what, call):
    try:
        call()
    except MissingExtra as e:
        errors[what] = str(e)
error("DkNN", lambda: snnl.DkNN(k=3))
error("digits", lambda: snnl.load_dataset("digits"))
error("mnist", lambda: snnl.load_dataset("mnist", root=tempfile.mkdtemp(), download=False))
for module in ("snnl.stats", "snnl.plots", "snnl.experiments", "snnl.experiments.loss.synthetic"):
    error(module, lambda: __import__(module))
cli = io.StringIO()
with contextlib.redirect_stderr(cli):
    import snnl.__main__
    out["cli_code"] = snnl.__main__.main(["train"])
errors["cli"] = cli.getvalue()
out["errors"] = errors
out["loaded_after"] = loaded()
print(json.dumps(out))
"""


def run_without(blocked: set[str], code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER.format(blocked=set(blocked)) + code], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_without_the_extras_the_core_works_and_each_feature_names_its_extra(tmp_path):
    """One interpreter without the extras: the core's functions, then each feature that needs an
    extra, the command line's ``main`` last."""
    p = run_without({*EXTRAS, "torchvision"}, LIGHT, tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.splitlines()[-1])
    assert out["loaded"] == [] and out["loaded_after"] == []  # nothing of an extra was imported
    assert out["loss"] > 0 and out["entanglement"] >= 0 and out["triplet"] >= 0 and out["regulariser"] > 0
    assert all(0 < d <= 0.1 + 1e-6 for d in out["attacks"]) and out["features"] == [16, 4]
    assert 0 <= out["train"] <= 1
    errors = out["errors"]
    assert errors.keys() == {"DkNN", "digits", "mnist", "snnl.stats", "snnl.plots", "snnl.experiments",
                             "snnl.experiments.loss.synthetic", "cli"}
    assert errors["DkNN"] == ("DkNN needs faiss-cpu, which a plain `pip install snnl` leaves out: "
                              "pip install 'snnl[dknn]'")
    assert errors["digits"].startswith("load_dataset('digits') needs scikit-learn")
    assert errors["mnist"].startswith("load_dataset (every dataset but your own) needs torchvision")
    assert errors["snnl.stats"].startswith("snnl.stats needs scipy") and "matplotlib" in errors["snnl.plots"]
    assert errors["snnl.experiments"] == errors["snnl.experiments.loss.synthetic"]
    for what, msg in errors.items():
        assert len(msg.strip().splitlines()) == 1, (what, msg)
        if what != "DkNN":
            assert msg.rstrip().endswith("pip install 'snnl[experiments]'"), (what, msg)
    assert out["cli_code"] == 2 and errors["cli"].startswith("python -m snnl: error: load_dataset('digits') needs")


def test_the_readme_examples_run_without_the_extras_but_torchvision(tmp_path):
    """The "package in five lines" needs the core only; the regulariser example, torchvision's ResNet."""
    blocks = [b for b in python_blocks((REPO / "README.md").read_text())
              if "soft_nearest_neighbor_loss" in b or "SNNLRegularizer" in b]
    assert len(blocks) == 2
    code = "\n".join(f"exec(compile({b!r}, 'README block', 'exec'), {{}})" for b in blocks)
    loaded = "sorted(m for m, v in sys.modules.items() if v is not None and m.split('.')[0] in BLOCKED)"
    p = run_without(set(EXTRAS), code + f"\nprint({loaded})", tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.splitlines()[-1] == "[]" and "'layer3'" in p.stdout


def test_the_wheel_requires_only_the_core_and_names_the_extras(tmp_path):
    """The metadata a wheel gets (setuptools' PEP 517 hook, on a copy of the package's files)."""
    src = tmp_path / "src"
    for f in ("pyproject.toml", "README.md", "LICENSE"):
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, src / f)
    shutil.copytree(REPO / "snnl", src / "snnl", ignore=shutil.ignore_patterns("__pycache__"))
    hook = ("import sys; from setuptools import build_meta as b; "
            "print(b.prepare_metadata_for_build_wheel(sys.argv[1]))")
    (tmp_path / "meta").mkdir()
    info = subprocess.run([sys.executable, "-c", hook, str(tmp_path / "meta")], cwd=src, capture_output=True,
                          text=True, check=True).stdout.split()[-1]
    meta = (tmp_path / "meta" / info / "METADATA").read_text()
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    core = {re.split(r"[<>=!~ ;\[]", r)[0].lower() for r in requires if "extra ==" not in r}
    assert core == CORE, core
    extras = {line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Provides-Extra:")}
    assert extras == {"dknn", "experiments", "book", "sweeps", "test", "all"}
    by_extra = lambda name: {re.split(r"[<>=!~ ;\[]", r)[0].lower() for r in requires  # noqa: E731
                             if re.search(rf"extra == ['\"]{name}['\"]", r)}
    assert by_extra("dknn") == {"faiss-cpu"}
    assert by_extra("sweeps") == {"optuna", "greenlet", "psycopg"}
    assert {"torchvision", "scipy", "scikit-learn", "matplotlib", "pytorch-ood"} <= by_extra("experiments")
    assert "torch" not in by_extra("experiments") | by_extra("dknn")  # torch: the core's pin, never another


def test_make_install_installs_everything():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r'pip install -q -c constraints\.txt -e "\.\[all\]"', makefile)


def test_require_names_the_extra_only_for_a_missing_package(tmp_path, monkeypatch):
    from snnl.extras import MissingExtra, check_installed, require

    with pytest.raises(MissingExtra) as err:
        require("sklearn_absent.datasets", "experiments", "a feature")
    assert str(err.value) == ("a feature needs sklearn_absent, which a plain `pip install snnl` leaves out: "
                              "pip install 'snnl[experiments]'")
    assert isinstance(err.value, ImportError) and err.value.name == "sklearn_absent"
    (tmp_path / "broken_pkg").mkdir()  # installed, but broken by a dependency of its own: that error, as it is
    (tmp_path / "broken_pkg" / "__init__.py").write_text("import another_absent_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as err:
        require("broken_pkg", "dknn", "DkNN")
    assert not isinstance(err.value, MissingExtra) and err.value.name == "another_absent_dependency"
    assert require("json", "dknn", "x").dumps([1]) == "[1]"
    check_installed(("json", "broken_pkg"), "dknn", "x")  # found, not imported
    with pytest.raises(MissingExtra, match=r"x needs faiss-cpu, .*'snnl\[dknn\]'"):
        monkeypatch.setitem(sys.modules, "faiss", None)
        check_installed(("json", "faiss"), "dknn", "x")
