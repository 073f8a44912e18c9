"""Headless OpenGL for MuJoCo: choose EGL when there is no display, and explain failures."""

from __future__ import annotations

import os

INSTALL_HINT = (
    "headless MuJoCo rendering failed ({error}). Install Mesa's EGL: "
    "`apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri` (MUJOCO_GL=egl), or OSMesa: "
    "`apt-get install libosmesa6` and set MUJOCO_GL=osmesa."
)


def ensure_headless_gl() -> None:
    """Pick EGL for MuJoCo when no backend is set and no display exists (call before importing mujoco)."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"
    if os.environ.get("MUJOCO_GL") in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


def rendering_error(exc: BaseException) -> RuntimeError:
    return RuntimeError(INSTALL_HINT.format(error=exc))
