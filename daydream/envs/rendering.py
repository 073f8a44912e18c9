"""Headless OpenGL for MuJoCo: pick EGL when there is no display, and explain GL failures.

dm_control chooses its GL backend from MUJOCO_GL when it is first imported, so
`import_dm_control_suite()` sets that up before the import and turns an unusable GL
library into a `RenderingError` that names the Debian packages to install.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from types import ModuleType

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "headless MuJoCo rendering with MUJOCO_GL={backend} failed ({error}). "
    "For EGL (the default without a display): `apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri`; "
    "for OSMesa: `apt-get install libosmesa6` and set MUJOCO_GL=osmesa; "
    "with a display, MUJOCO_GL=glfw."
)


class RenderingError(RuntimeError):
    """MuJoCo could not create an OpenGL context; the message says what to install."""


def configure_headless_gl(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Choose MUJOCO_GL=egl when it is unset and there is no DISPLAY; returns the backend.

    Must run before mujoco or dm_control are imported. PyOpenGL is pointed at the same
    platform, as it would otherwise look for GLX.
    """
    env = os.environ if environ is None else environ
    if "MUJOCO_GL" not in env and not env.get("DISPLAY"):
        env["MUJOCO_GL"] = "egl"
        log.debug("no DISPLAY: rendering MuJoCo headless with MUJOCO_GL=egl")
    backend = env.get("MUJOCO_GL")
    if backend in ("egl", "osmesa"):
        env.setdefault("PYOPENGL_PLATFORM", backend)
    return backend


def rendering_error(exc: BaseException) -> RenderingError:
    return RenderingError(INSTALL_HINT.format(backend=os.environ.get("MUJOCO_GL", "<unset>"),
                                              error=f"{type(exc).__name__}: {exc}"))


def import_dm_control_suite() -> ModuleType:
    """Import `dm_control.suite` with headless GL configured; GL failures become RenderingError."""
    configure_headless_gl()
    try:
        from dm_control import suite
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("dm_control", "mujoco"):
            raise ModuleNotFoundError(f"the dmc backend needs dm_control: `pip install dm_control` ({exc})",
                                      name=exc.name) from exc
        raise rendering_error(exc) from exc
    except (ImportError, AttributeError, OSError, RuntimeError) as exc:
        # dm_control loads the chosen GL library at import; a missing libEGL/libOSMesa
        # surfaces here as one of these, far from its cause.
        raise rendering_error(exc) from exc
    return suite
