"""Dreamer (DreamerV3-style) in PyTorch: world model, actor-critic in imagination, `Agent`."""

from daydream.agent.agent import Agent, CheckpointMismatch, PolicyState, action_spec, resolve_device

__all__ = ["Agent", "CheckpointMismatch", "PolicyState", "action_spec", "resolve_device"]
