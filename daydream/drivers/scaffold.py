"""`daydream new-robot NAME`: the files a new robot starts from.

This module owns writing the scaffold from its templates (package data in `scaffold_templates/`).
`new_robot(name, directory)` writes, under `directory`:

* `<name>/__init__.py`, `<name>/driver.py`: `<Name>Driver`, a `SimulatedDriver` whose
  joints follow their targets with first-order dynamics: a stand-in for the robot, with
  the places for real hardware I/O marked `HARDWARE`;
* `<name>/task.py`: `<Name>Reach`, a `Task` (reach a target pose), named in configs as
  `<name>.task:<Name>Reach`;
* `configs/<name>.yaml`: a robot config naming both (`env.backend: robot`);
* `tests/test_<name>.py`: the conformance kit as pytest tests, the task, and a smoke
  test of the robot env built from the config.

Out of the box (with `directory` on PYTHONPATH) the driver passes `daydream driver check
<name>.driver:<Name>Driver --config configs/<name>.yaml` and the tests pass; the
walk-through from there to the robot is `docs/adding-a-robot.md`. Existing files are
never overwritten.
"""

from __future__ import annotations

import keyword
import re
import string
import sys
from importlib import resources
from pathlib import Path

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
RESERVED = {"daydream", "tests", "test", "configs", "docs"}


def check_name(name: str) -> None:
    """Raise ValueError unless `name` makes a good package name for a robot."""
    if not NAME_PATTERN.fullmatch(name or ""):
        raise ValueError(f"robot name {name!r} must be a lowercase Python identifier: a letter, then letters, digits "
                         "or underscores (e.g. myarm, my_arm)")
    if keyword.iskeyword(name) or name in RESERVED or name in sys.stdlib_module_names:
        raise ValueError(f"robot name {name!r} would shadow a Python keyword, module or folder of the scaffold; "
                         f"pick another (e.g. my_{name})")


def class_prefix(name: str) -> str:
    """`my_arm` -> `MyArm`: the prefix of the scaffold's class names."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def scaffold_files(name: str) -> dict[str, str]:
    """Relative path -> content of every file `new_robot` writes."""
    check_name(name)
    values = {"name": name, "Name": class_prefix(name)}
    return {path.format(**values): string.Template(_template(rel)).substitute(values)
            for path, rel in _TEMPLATES.items()}


def new_robot(name: str, directory: str | Path = ".") -> list[Path]:
    """Write the scaffold for robot `name` under `directory`; the paths written. FileExistsError if any exists."""
    files = scaffold_files(name)
    root = Path(directory)
    existing = [str(root / rel) for rel in files if (root / rel).exists()]
    if existing:
        raise FileExistsError(f"not overwriting {', '.join(existing)}; pick another name or --dir, or move them away")
    written = []
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


# Template files (string.Template: ${name}, ${Name}) shipped as package data, by the path they are written to.
_TEMPLATES = {
    "{name}/__init__.py": "package/__init__.py.tmpl",
    "{name}/driver.py": "package/driver.py.tmpl",
    "{name}/task.py": "package/task.py.tmpl",
    "configs/{name}.yaml": "configs/robot.yaml.tmpl",
    "tests/test_{name}.py": "tests/test_robot.py.tmpl",
}


def _template(rel: str) -> str:
    return resources.files("daydream.drivers").joinpath("scaffold_templates", rel).read_text()
