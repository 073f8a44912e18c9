#!/usr/bin/env bash
# Make headless MuJoCo rendering work: check that an EGL context can be made with the
# venv's mujoco; if not, install Debian's Mesa EGL packages (as root) or say what to install.
set -u
PY=${1:-.venv/bin/python}
PKGS="libegl1 libegl-mesa0 libgl1-mesa-dri"
check() { MUJOCO_GL=egl "$PY" -c "import mujoco; c = mujoco.GLContext(8, 8); c.make_current(); c.free()" >/dev/null 2>&1; }
if check; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "headless rendering: installing $PKGS" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PKGS >/dev/null
  if check; then exit 0; fi
fi
cat >&2 <<MSG
headless MuJoCo rendering (MUJOCO_GL=egl) does not work on this machine.
Pixel tasks (dmc pixels, videos) need it. On Debian/Ubuntu install:
    sudo apt-get install $PKGS
or use software OSMesa: sudo apt-get install libosmesa6 and set MUJOCO_GL=osmesa.
Vector-observation tasks still run without it.
MSG
exit 0
