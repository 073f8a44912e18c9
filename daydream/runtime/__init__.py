"""The processes of the stack: single-process `train` and `eval`, the asynchronous `learner` and
`actor`s and the `run` launcher that starts them, and a run's `report`."""
