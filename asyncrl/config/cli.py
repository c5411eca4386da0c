"""The command line of ``python -m asyncrl.run``, generated from the config fields.

One flag per field of ``RunConfig`` and of the chosen algorithm's config class, typed from
the field's annotation; ``--help`` lists the algorithm's presets (``asyncrl.registry``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import types
import typing
from typing import Any

from asyncrl import registry
from asyncrl.config.fields import flag
from asyncrl.config.presets import RUN_PRESETS, run_preset
from asyncrl.config.run_config import RunConfig

DEFAULT_ALGO: str = RunConfig.__dataclass_fields__["algo"].default
"""What ``--algo`` is when not given."""


class CliError(Exception):
    """Bad command-line input; the CLI prints it on one line and exits with code 2."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one-line ``CliError``s, not a usage dump."""

    def error(self, message: str) -> typing.NoReturn:
        raise CliError(f"{message} (see --help)")


def _optional_float(text: str) -> float | None:
    if text.lower() == "none":
        return None
    return float(text)


def field_types(cls: type) -> dict[str, Any]:
    """Field name to its resolved annotation (``float | None``, ``tuple[int, ...]``, ...)."""
    return typing.get_type_hints(cls)


def _strip_none(annotation: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, else ``(annotation, False)``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def coerce(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with lists made tuples where ``cls``'s field is a tuple (JSON and argparse
    give lists)."""
    hints = field_types(cls)
    return {
        name: tuple(v) if isinstance(v, list) and typing.get_origin(hints.get(name)) is tuple else v
        for name, v in values.items()
    }


def _add_fields(group: argparse._ArgumentGroup, cls: type) -> None:
    """One flag per dataclass field, typed by its annotation. Defaults are SUPPRESSed so
    that the parsed namespace holds only the flags actually given (presets must not
    override them)."""
    hints = field_types(cls)
    for f in dataclasses.fields(cls):
        help_text = f.metadata.get("help", "")
        if "(default:" not in help_text and "; default:" not in help_text:  # a help that says its own default
            help_text += f" (default: {_show_default(f.default)})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        kind, optional = _strip_none(hints[f.name])
        choices = registry.names() if f.name == "algo" else f.metadata.get("choices")
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is tuple:
            element = typing.get_args(kind)[0]
            kwargs.update(type=element, nargs="+", metavar="X" if element is float else "N")
        elif kind is float:
            kwargs["type"] = _optional_float if optional else float
        elif kind is int:
            kwargs["type"] = int
        elif choices:  # checked by the config class, for its one-line message
            kwargs["metavar"] = "{" + ",".join(choices) + "}"
        elif kind is str and optional:
            kwargs["metavar"] = "DIR" if f.name.endswith("dir") else f.name.upper()
        group.add_argument(flag(f.name), **kwargs)
        if f.name == "sync":
            group.add_argument(
                "--async", dest="sync", action="store_false", default=argparse.SUPPRESS, help="the same as --no-sync"
            )


def _show_default(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return str(value)


def preset_flags(values: dict[str, Any]) -> str:
    """A preset's values as the flags that would set them: ``--t-max 5 --rms-eps-inside``."""
    return " ".join(_preset_flag(k, v) for k, v in values.items())


def _preset_flag(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return flag(name) if value else "--no-" + name.replace("_", "-")
    return f"{flag(name)} {_show_default(value)}"


def build_parser(algo: str | None = None) -> argparse.ArgumentParser:
    """The ``asyncrl.run`` parser for one algorithm's flags (default: ``RunConfig.algo``'s)
    plus the run's.

    Raises:
        ValueError: if ``algo`` is not registered.
    """
    algo = algo or DEFAULT_ALGO
    spec = registry.get(algo)
    grouped: dict[str, list[str]] = {}  # the same values for several environments: listed once
    for p in spec.presets:
        grouped.setdefault(preset_flags(dict(p.values)), []).append(p.env)
    presets = "; ".join(f"{', '.join(envs)}: {flags}" for flags, envs in grouped.items())
    run_presets = "; ".join(f"{pattern}: {preset_flags(values)}" for pattern, values, _ in RUN_PRESETS)
    parser = Parser(
        prog="python -m asyncrl.run",
        description="Train an agent with asynchronous actor-learner processes on a shared model.",
        epilog=(
            f"Presets for --algo {algo} (flags given on the command line win): {presets or 'none'}. "
            f"Run presets for every algorithm: {run_presets}. "
            "Flags of other algorithms: python -m asyncrl.run --algo ALGO --help"
        ),
    )
    _add_fields(parser.add_argument_group("run"), RunConfig)
    _add_fields(parser.add_argument_group(f"{algo} (--algo {algo}: {spec.summary})"), spec.config)
    return parser


RESUME_OVERRIDES = frozenset(
    {
        "total_steps",
        "max_seconds",
        "target_return",
        "log_interval",
        "checkpoint_interval",
        "on_worker_failure",
        "max_restarts",
        "progress",
        "start_method",
        "resume",
        "backend",
        "address",
    }
)
"""Flags that may change when a run is resumed; every other value comes from the run."""


def parse_args(argv: list[str] | None) -> Any:
    """Parse command-line flags into a validated ``Config``.

    Algorithm fields take, in order of precedence: the flag, the algorithm's preset for
    the environment (``AlgoSpec.presets``), the config class's default. With ``--resume
    RUN_DIR`` every field comes from ``RUN_DIR/config.json`` except the
    ``RESUME_OVERRIDES`` given on the command line.

    Raises:
        CliError: on an unknown flag, a malformed value or a value out of range, a
            ``--resume`` folder without a readable config, or a flag that cannot change
            on resume.
    """
    pre = Parser(add_help=False)
    pre.add_argument("--resume", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.resume is not None:
        return _resume_config(known.resume, argv)
    return _parse_fresh(argv)


def _resume_config(run_dir: str, argv: list[str] | None) -> Any:
    from asyncrl.config import Config

    path = os.path.join(run_dir, "config.json")
    try:
        with open(path) as f:
            saved = Config.from_dict(json.load(f))
    except (OSError, ValueError) as exc:
        raise CliError(f"--resume {run_dir}: cannot read {path}: {exc}") from None
    given = vars(build_parser(saved.run.algo).parse_args(argv))
    fixed = sorted(set(given) - RESUME_OVERRIDES)
    if fixed:
        raise CliError(
            f"--resume continues the run's own config; {', '.join(map(flag, fixed))} cannot change "
            f"(only {', '.join(sorted(map(flag, RESUME_OVERRIDES - {'resume'})))})"
        )
    try:
        run = dataclasses.replace(saved.run, **given, run_dir=run_dir)
        return Config(run=run, algo=saved.algo)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _parse_fresh(argv: list[str] | None) -> Any:
    from asyncrl.config import Config, algo_config

    pre = Parser(add_help=False)
    pre.add_argument("--algo", default=DEFAULT_ALGO)
    known, _ = pre.parse_known_args(argv)
    try:
        parser = build_parser(known.algo)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    given = vars(parser.parse_args(argv))
    run_fields = {f.name for f in dataclasses.fields(RunConfig)}
    try:
        run_given = {k: v for k, v in given.items() if k in run_fields}
        env = run_given.get("env", RunConfig.env)
        run = RunConfig(**coerce(RunConfig, {**run_preset(env), **run_given}))
        algo = algo_config(run.algo, run.env, **{k: v for k, v in given.items() if k not in run_fields})
        return Config(run=run, algo=algo)
    except ValueError as exc:
        raise CliError(str(exc)) from None
