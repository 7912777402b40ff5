"""Build modules without allocating or initialising their parameters."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def params_on_meta() -> Iterator[None]:
    """Inside this block every new ``nn.Parameter`` lives on the meta device.

    Buffers stay real (position-id tables and the like are computed at construction), so a
    module built here only needs ``load_state_dict(..., assign=True)`` to be usable. Building
    the 250k-token XLM-R this way takes milliseconds instead of seconds of random init.
    """
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None:
            meta = module._parameters[name].to("meta")
            module._parameters[name] = nn.Parameter(meta, requires_grad=param.requires_grad)

    nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]
