"""Configuration: the run's, each algorithm's, their presets, and the command line.

- ``run_config.RunConfig``: what to train, for how long, where (every algorithm);
- ``fields``: the field groups an algorithm's config class subclasses (``LearnerFields``,
  ``ActorCriticFields``, ``ValueBasedFields``, ``BatchedFields``, ``OffPolicyFields``);
  the config classes themselves live beside their algorithms (``asyncrl.algos.a3c.A3CConfig``);
- ``presets``: values that several algorithms' presets share (the presets are declared in
  each algorithm's ``AlgoSpec``);
- ``cli``: ``python -m asyncrl.run``'s flags, generated from the fields.

Every field is a command-line flag with the same name (``t_max`` is ``--t-max``); its help
is the flag's documentation, with units and default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from asyncrl import registry
from asyncrl.config.cli import RESUME_OVERRIDES, CliError, Parser, build_parser, coerce, parse_args
from asyncrl.config.run_config import RunConfig

__all__ = [
    "RESUME_OVERRIDES",
    "CliError",
    "Config",
    "Parser",
    "RunConfig",
    "algo_config",
    "build_parser",
    "parse_args",
    "preset",
]


def preset(algo: str, env: str) -> dict[str, Any]:
    """The preset values of ``algo`` for ``env`` (``AlgoSpec.preset``), or ``{}``.

    Raises:
        ValueError: if ``algo`` is not registered.
    """
    found = registry.get(algo).preset(env)
    return dict(found.values) if found is not None else {}


def algo_config(algo: str, env: str, **overrides: Any) -> Any:
    """The config of ``algo`` for ``env``: class defaults, then its preset, then ``overrides``.

    Raises:
        ValueError: if ``algo`` is unknown or a value is out of range.
    """
    cls = registry.get(algo).config
    return cls(**coerce(cls, {**preset(algo, env), **overrides}))


@dataclass(frozen=True)
class Config:
    """A full run: the common settings and the chosen algorithm's.

    Raises:
        ValueError: if the algorithm's fields do not fit the run's (``check_run``).
    """

    run: RunConfig
    algo: Any

    def __post_init__(self) -> None:
        self.algo.check_run(self.run)

    def to_dict(self) -> dict[str, Any]:
        return {"run": dataclasses.asdict(self.run), "algo": dataclasses.asdict(self.algo)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Rebuild a config saved by ``to_dict``.

        Raises:
            ValueError: if the algorithm is unknown or a field is missing or invalid.
        """
        try:
            run = RunConfig(**data["run"])
            return cls(run=run, algo=algo_config(run.algo, run.env, **data["algo"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed config: {exc}") from None
