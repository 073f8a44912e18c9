"""The driver conformance kit: a battery of checks that any `Driver` must pass to join the stack.

Each check takes a **driver factory** (a zero-argument callable returning a fresh, unopened
driver: a class, a `functools.partial`, a lambda) and `CheckOptions`, builds its own
driver(s), closes them afterwards and returns a `CheckResult(name, passed, detail)`; what
each check decides is in its docstring (`checks.py`). `run_checks` runs the battery and
returns a `Report` whose `format()` is what `daydream driver check` prints.

Use from pytest (one import, one line in a user's test file):

    from daydream.drivers.conformance import conformance_tests
    from my_robot.driver import MyDriver

    test_conformance = conformance_tests(MyDriver)      # one test per check

or `run_checks(factory).ok` / `.format()` in any test.
"""

import daydream.drivers.conformance.checks  # noqa: F401  (importing the checks registers the battery)
from daydream.drivers.conformance.driving import applied_target
from daydream.drivers.conformance.runner import (CHECKS, CheckFailed, CheckOptions, CheckResult, DriverFactory, Report,
                                                 check_driver, conformance_tests, run_check, run_checks)
from daydream.drivers.conformance.validators import sample_problems, spec_problems

__all__ = ["CHECKS", "CheckFailed", "CheckOptions", "CheckResult", "DriverFactory", "Report", "applied_target",
           "check_driver", "conformance_tests", "run_check", "run_checks", "sample_problems", "spec_problems"]
