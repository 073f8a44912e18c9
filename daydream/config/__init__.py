"""Configuration: YAML files merged into typed, frozen dataclasses. `schema` declares the sections and
their knobs (defaults: `configs/defaults.yaml`); `loader` merges and checks the files and overrides."""

from daydream.config.loader import (  # noqa: F401
    RENAMED_KEYS,
    RENAMED_SIZES,
    config_dir,
    config_from_dict,
    load_config,
    resolve_config_path,
    save_config_yaml,
)
from daydream.config.schema import (  # noqa: F401
    POLICY_RUNTIMES,
    REPO_ROOT,
    SAFE_MODES,
    BehaviorConfig,
    Config,
    ConfigError,
    CurveConfig,
    EnvConfig,
    ModelConfig,
    PlannerConfig,
    ReplayConfig,
    RobotConfig,
    RosConfig,
    SafeMode,
    SafetyConfig,
    TrainConfig,
    TransportConfig,
    WorldModelsConfig,
)
