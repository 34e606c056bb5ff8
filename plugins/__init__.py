"""LiteDA: tllib-style plugins for adapting, compressing and deploying MobileNetV3-Small.

Pipeline order (one module a stage): datasets -> backbones -> classifier -> engine
(+ adaptation/<method>, distill) -> compress/* -> deploy/* -> metrics/analysis -> report.
"""
__version__ = "0.2.0"
