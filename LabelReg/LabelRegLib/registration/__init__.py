"""Registering a pair with a trained model: the registrar, the gland model at inference, the glands start, the
self-check, mapping points through a result, and the worker process that keeps a model loaded.

:class:`~.registrar.Registrar` is the one entry point; :mod:`.worker`, :mod:`.worker_channel` and
:mod:`.worker_client` run it in a process of its own (Slicer's main thread never imports torch). May import
:mod:`..data`, :mod:`..nets` and :mod:`..core`.
"""

from __future__ import annotations
