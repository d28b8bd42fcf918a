"""The banner at the top of every chapter: profile, data, device and wall time of the run.

What a results record notes (SPEC section 7), on the page: the profile (``small`` or
``paper``), the data actually used (a substitute named as such, as the records name it:
``"fashion-mnist (substitute for cifar10)"``) and the device. A chapter creates the banner
after its imports, which displays it, and calls :meth:`Banner.finish` in its last code cell,
which updates the *same* output with the wall time (an IPython display id: papermill stores
the update in the original output, so the page shows the final banner at its top).

>>> banner = Banner(profile="small", datasets=["digits"], device="cpu")  # doctest: +SKIP
>>> banner.finish()  # doctest: +SKIP
"""

from __future__ import annotations

import html
import time
from typing import Any, Iterable

import torch

from snnl.results import PROFILES, device_name, resolve_device

RECORDS = "records"  # the profile of a page that only reads committed records and trains nothing


def data_label(item: Any) -> str:
    """The data behind ``item`` as the records name it, with what it stands in for. ``item``: a
    name; a results record (``dataset``, ``config["substitute_for"]``); a dict or object with
    ``dataset`` and ``substitute_for`` (a chapter's result); a :class:`snnl.Dataset`."""
    if isinstance(item, str):
        return item
    get = item.get if isinstance(item, dict) else (lambda key: getattr(item, key, None))
    name = get("dataset") or get("name")
    if not isinstance(name, str) or not name:
        raise TypeError(f"cannot tell the dataset of {type(item).__name__!r}: pass a name, a record or a result")
    config = get("config")
    sub = get("substitute_for") or (config.get("substitute_for") if isinstance(config, dict) else None)
    return f"{name} (substitute for {sub})" if sub else name


def _labels(datasets) -> list[str]:
    """The labels of ``datasets`` (one item or several), each once, in order."""
    return list(dict.fromkeys(map(data_label, [datasets] if isinstance(datasets, (str, dict)) else datasets)))


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Banner:
    """A chapter's run banner; displays itself on creation, :meth:`finish` adds the wall time.

    In IPython it is an HTML box, updated in place; elsewhere it prints a line. The device is
    resolved (:func:`resolve_device`), the data named as the records name it:

    >>> ds = load_dataset("digits", n_train=100)
    >>> banner = Banner(profile="small", datasets=[ds.name], device="cpu")
    Profile: small | Data: digits | Device: cpu | Wall time: running…
    >>> banner.finish()
    Profile: small | Data: digits | Device: cpu | Wall time: 0 s

    Args:
        profile: ``"small"``, ``"paper"``, or ``"records"`` for a page that only reads
            committed records.
        datasets: what the chapter trains or measures on (names, records or results, see
            ``snnl.banner.data_label``); duplicates are shown once.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, a ``torch.device``; shown resolved (the GPU's
            name). None: the page trains nothing.
        show: display (in IPython) or print the banner now.
    """

    def __init__(self, profile: str, datasets: Iterable[Any] = (), device: str | torch.device | None = "auto",
                 *, show: bool = True):
        if profile not in PROFILES + (RECORDS,):
            raise ValueError(f"profile must be one of {', '.join(PROFILES + (RECORDS,))}, got {profile!r}")
        self.profile, self.datasets = profile, _labels(datasets)
        self.device = "none (this page trains nothing)" if device is None else device_name(resolve_device(device))
        self.wall_seconds: float | None = None
        self._t0, self._handle, self._shown = time.perf_counter(), None, show
        if show:
            self._show()

    def fields(self) -> dict[str, str]:
        profile = "records (reads committed results)" if self.profile == RECORDS else self.profile
        wall = "running…" if self.wall_seconds is None else format_duration(self.wall_seconds)
        return {"Profile": profile, "Data": ", ".join(self.datasets) or "none", "Device": self.device,
                "Wall time": wall}

    def __str__(self) -> str:
        return " | ".join(f"{k}: {v}" for k, v in self.fields().items())

    __repr__ = __str__

    def _repr_html_(self) -> str:
        items = " &middot; ".join(f"<strong>{k}</strong> {html.escape(v)}" for k, v in self.fields().items())
        return ('<div class="admonition note snnl-banner">'
                '<p class="admonition-title">This page was computed with</p>'
                f'<p>{items}</p></div>')

    def finish(self, datasets: Iterable[Any] | None = None) -> None:
        """Stop the clock and update the displayed banner in place (print it outside IPython).
        ``datasets``, when given, replaces the data named at creation: what was actually used
        (e.g. a substitute loaded in place of an unavailable dataset)."""
        self.wall_seconds = time.perf_counter() - self._t0
        if datasets is not None:
            self.datasets = _labels(datasets)
        if self._handle is not None:
            self._handle.update(self)
        elif self._shown:
            print(self)

    def _show(self) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:  # plain Python without IPython installed
            get_ipython = lambda: None  # noqa: E731
        if get_ipython() is None:
            print(self)
        else:
            self._handle = display(self, display_id=True)
