"""Import tllib on current torch / torchvision / numpy, without touching tllib's files.

tllib's head predates these releases and stops at import (or, for ``np.float``, in the first training step).
``apply()`` puts back, from LiteDA's side, the few names it still uses:

| name tllib uses | removed in | put back as |
|---|---|---|
| ``torch.utils.data.dataset.T_co`` | torch 2.x | the same covariant ``TypeVar`` (``tllib.vision.datasets.imagelist``) |
| ``torchvision.models.resnet.model_urls`` | torchvision 0.13 | the same URLs, read off the weights enums (``tllib.vision.models.resnet``) |
| ``torchvision.models.utils.load_state_dict_from_url`` | torchvision 0.12 | ``torch.hub.load_state_dict_from_url`` (segmentation models) |
| ``np.float``, ``np.int``, ``np.bool``, ``np.object`` | numpy 1.24 | the builtins, seen only by tllib's own modules (``tllib.modules.grl``: every DANN/CDAN step) |

The numpy aliases are not put back on numpy itself (other libraries rely on their absence); an import hook
gives every module under ``tllib`` a view of numpy that has them. Everything is idempotent and adds only names
that are missing, so a tllib or torch release that has them is left alone. tllib's other requirements
(``prettytable``, ``numba``, ...) are packages to install, not shims: ``pip install -r requirements.txt`` of its
repository.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
import typing
from typing import Optional

INSTALL_HINT = ("tllib is not installed: get https://github.com/thuml/Transfer-Learning-Library and "
                "`pip install -r requirements.txt && pip install --no-deps -e .` in it (docs/tllib.md)")

# numpy 1.24 removed these aliases of builtins (numpy 2 brought ``np.bool`` back as ``np.bool_``: then it stays)
NUMPY_ALIASES = {"float": float, "int": int, "bool": bool, "object": object}

# torchvision's model_urls before 0.13 held the IMAGENET1K_V1 files of these models (tllib's resnet.py).
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
           "wide_resnet50_2", "wide_resnet101_2")


def legacy_numpy() -> types.ModuleType:
    """A view of numpy with the removed aliases (every other name is numpy's own, looked up live)."""
    import numpy

    view = types.ModuleType("numpy", numpy.__doc__)
    view.__getattr__ = lambda name: getattr(numpy, name)  # PEP 562: consulted for names the view lacks
    # numpy.__dict__, not hasattr: numpy's own __getattr__ warns on every removed alias it is asked about
    view.__dict__.update({k: v for k, v in NUMPY_ALIASES.items() if k not in numpy.__dict__})
    return view


def _give_legacy_numpy(module: types.ModuleType) -> None:
    import numpy

    if module.__dict__.get("np") is numpy:
        module.np = _LEGACY_NUMPY
    if module.__dict__.get("numpy") is numpy:
        module.numpy = _LEGACY_NUMPY


class _LegacyNumpyLoader(importlib.abc.Loader):
    """Runs the real loader, then hands the module the numpy view (functions read ``np`` at call time)."""

    def __init__(self, inner: importlib.abc.Loader):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        _give_legacy_numpy(module)

    def __getattr__(self, name):  # get_source, is_package, resource readers: the real loader's
        return getattr(self.inner, name)


class TllibNumpyFinder(importlib.abc.MetaPathFinder):
    """Finds ``tllib`` and ``tllib.*`` with the other finders (site-packages, editable installs) and wraps their
    loader; every other import passes through untouched."""

    package = "tllib"

    def find_spec(self, name: str, path=None, target=None) -> Optional[importlib.machinery.ModuleSpec]:
        if name != self.package and not name.startswith(self.package + "."):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _LegacyNumpyLoader(spec.loader)
                return spec
        return None


_LEGACY_NUMPY = legacy_numpy()


def _torch_names() -> None:
    import torch.utils.data.dataset as dataset

    if not hasattr(dataset, "T_co"):
        dataset.T_co = typing.TypeVar("T_co", covariant=True)


def _torchvision_names() -> None:
    import torch.hub
    import torchvision.models as tvm
    import torchvision.models.resnet as resnet

    if not hasattr(resnet, "model_urls"):
        resnet.model_urls = {n: tvm.get_model_weights(n).IMAGENET1K_V1.url for n in RESNETS}
    try:
        import torchvision.models.utils  # noqa: F401
    except ImportError:
        utils = types.ModuleType("torchvision.models.utils", "load_state_dict_from_url for tllib (torch.hub's)")
        utils.load_state_dict_from_url = torch.hub.load_state_dict_from_url
        sys.modules["torchvision.models.utils"] = utils
        tvm.utils = utils


def apply() -> None:
    """Put back the names above (idempotent). Call before the first ``import tllib``."""
    _torch_names()
    _torchvision_names()
    if not any(isinstance(f, TllibNumpyFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, TllibNumpyFinder())
    for name, module in list(sys.modules.items()):  # tllib modules imported before apply()
        if (name == "tllib" or name.startswith("tllib.")) and module is not None:
            _give_legacy_numpy(module)


def available() -> bool:
    """Whether tllib can be imported (after the shims)."""
    try:
        import_tllib()
    except ImportError:
        return False
    return True


def import_tllib() -> types.ModuleType:
    """``import tllib`` after :func:`apply`. ImportError with how to install it when it is missing (or when one
    of its own requirements is)."""
    apply()
    try:
        import tllib
    except ModuleNotFoundError as e:
        if e.name == "tllib":
            raise ImportError(INSTALL_HINT) from None
        raise ImportError(f"tllib is installed but its requirement '{e.name}' is not: `pip install {e.name}` "
                          f"(tllib's requirements.txt)") from e
    if getattr(tllib, "__file__", None) is None:  # a folder named tllib on sys.path (e.g. its repository's parent)
        sys.modules.pop("tllib", None)
        raise ImportError(f"'tllib' resolves to a folder without the package ({list(tllib.__path__)[:1]}); "
                          + INSTALL_HINT)
    return tllib
