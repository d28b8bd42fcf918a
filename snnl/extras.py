"""Optional dependencies, by the extra of the package that installs them.

``pip install snnl`` installs the core: torch, numpy and tqdm (the loss, the regulariser, the
models, training, the attacks). The rest comes with an extra, named where a feature needs it:

==================  ===========================================================================
``[dknn]``          faiss-cpu: :class:`snnl.DkNN`
``[experiments]``   torchvision, scipy, scikit-learn, matplotlib, pytorch-ood (and faiss): the
                    datasets but your own, :mod:`snnl.stats`, :mod:`snnl.plots`, the paper's
                    experiments (:mod:`snnl.experiments`) and the book
``[all]``           everything, with the book's tools and the tests (``make install``)
==================  ===========================================================================

:func:`require` imports a module or raises :class:`MissingExtra`, one line naming the extra.
``import snnl`` needs none of them.

>>> require("math", "dknn", "a test").sqrt(4.0)
2.0
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

PACKAGES = {"faiss": "faiss-cpu", "sklearn": "scikit-learn", "pytorch_ood": "pytorch-ood"}
"""Import names whose package on PyPI is named otherwise."""


class MissingExtra(ModuleNotFoundError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def message(module: str, extra: str, feature: str) -> str:
    """``<feature> needs <package>, which ... leaves out: pip install 'snnl[<extra>]'``."""
    top = module.split(".")[0]
    package = PACKAGES.get(top, top)
    return f"{feature} needs {package}, which a plain `pip install snnl` leaves out: pip install 'snnl[{extra}]'"


def require(module: str, extra: str, feature: str) -> ModuleType:
    """``import module``, or a one-line :class:`MissingExtra` saying that ``feature`` needs it and
    which extra of the package installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if e.name is not None and module.split(".")[0] != e.name.split(".")[0]:
            raise  # the module is there but fails on an import of its own: not a missing extra
        raise MissingExtra(message(module, extra, feature), name=e.name) from None


def check_installed(modules: tuple[str, ...], extra: str, feature: str) -> None:
    """A :class:`MissingExtra` for the first of ``modules`` that is not installed (without
    importing any: :func:`importlib.util.find_spec`)."""
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent that fails to import, or None in sys.modules
            found = False
        if not found:
            raise MissingExtra(message(module, extra, feature), name=module)
