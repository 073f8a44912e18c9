"""Loading a user's class named in a config as `package.module:ClassName` (drivers, tasks)."""

from __future__ import annotations

import importlib


def load_class(target: str, base: type, what: str) -> type:
    """The class `target` ("package.module:ClassName"), checked to subclass `base`; ValueError naming `what`."""
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"{what} '{target}' must look like 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{what} '{target}': cannot import module '{module_name}' ({exc}); is its folder on "
                         "PYTHONPATH or its package installed?") from exc
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"{what} '{target}': '{class_name}' in {module_name} is not a "
                         f"{base.__module__}.{base.__qualname__} subclass")
    return cls
