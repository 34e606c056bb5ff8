"""Working with other libraries' own code: tllib (thuml/Transfer-Learning-Library).

- ``liteda.interop.tllib_compat``: import tllib on current torch / torchvision / numpy (``import_tllib``).
- ``liteda.interop.tllib``: importing it registers LiteDA's backbones into tllib's model lookup, so tllib's
  example scripts train with ``-a mobilenet_v3_small`` (``liteda tllib-example``).
- ``liteda.interop.tllib_checkpoint``: a checkpoint trained by tllib's examples -> a LiteDA run folder.
- ``liteda.interop.tllib_losses``: tllib's own loss modules behind LiteDA's methods (``--tllib-losses``).

Nothing here is needed without tllib; every module imports tllib only when it is asked to (docs/tllib.md).
"""
