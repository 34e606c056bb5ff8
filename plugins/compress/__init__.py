"""Compression of a trained LiteDA classifier: registered techniques applied in order, each with a recovery
fine-tune, saved as a weights_only-loadable ``compressed.pt`` (``liteda.compressed/1``) and a TorchScript copy.

- :mod:`.registry`: the techniques (one file each, :class:`.base.Technique`) and the named recipes
- :mod:`.pipeline`: the context techniques work through (data, recovery fine-tune, logging)
- :mod:`.model_file`: the compressed-model file and its rebuild
- :mod:`.measure`: size, parameters, MACs, latency, accuracy
- :mod:`.cli`: ``liteda compress``
"""
from .measure import count_params_any, measure_latency, state_dict_mb
from .model_file import (FORMAT, compressed_from_record, compressed_record, load_compressed, read_compressed,
                         rebuild, resize_to, save_compressed, save_torchscript)

__all__ = ["FORMAT", "compressed_from_record", "compressed_record", "count_params_any", "load_compressed",
           "measure_latency", "read_compressed", "rebuild", "resize_to", "save_compressed", "save_torchscript",
           "state_dict_mb"]
