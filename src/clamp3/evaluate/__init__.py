"""Evaluation: retrieval metrics (``metrics``), folder scoring and retrieval evaluation
(``score``), plots (``plots``), linear probes and zero-shot classification.

Sub-modules are imported explicitly (``from clamp3.evaluate.metrics import ranks``) so that
importing one evaluator never pulls in the dependencies of another.
"""
