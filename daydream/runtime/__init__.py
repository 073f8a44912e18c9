"""The processes of the stack: single-process `train` and `eval` (learner and actors come later)."""
