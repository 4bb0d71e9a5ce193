"""
How every command runs (dbmate's `action()`): flags and variables -> Settings
-> the work -> one summary line -> the exit code.

`run_command` configures logging, loads settings, runs the command's work,
writes `bootstrap_completed` (or `bootstrap_failed` with the error's fields,
or `bootstrap_interrupted`) and picks the exit code. `config_options` gives a
click command every flag of `options.OPTIONS` it takes. structlog loads only
when a command runs, so `--help` stays fast.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple, NoReturn

import click

from .errors import BootstrapError, ExitCode, NotUpToDateError, SignalReceived
from .options import OPTIONS, parse_choice, parse_duration
from .settings import LOG_FORMATS, LOG_LEVELS, Settings, command_flags, load_settings

OPTION_KEYS = frozenset(o.key for o in OPTIONS)


class DurationType(click.ParamType):  # type: ignore[type-arg]
    """A duration flag: seconds (`60`, `2.5`) or with a unit (`500ms`, `30s`, `5min`)."""

    name = "duration"

    def __init__(self, allow_none: bool = False) -> None:
        self.allow_none = allow_none

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return parse_duration(value, allow_none=self.allow_none)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class ChoiceType(click.ParamType):  # type: ignore[type-arg]
    """A case-insensitive choice, parsed like its environment variable."""

    name = "choice"

    def __init__(self, choices: tuple[str, ...]) -> None:
        self.choices = choices
        self.name = "|".join(choices)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return parse_choice(str(value), self.choices)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


_TYPES: dict[str, Any] = {
    "ddl_lock_retries": click.IntRange(min=0),
    "wait_timeout": DurationType(),
    "lock_timeout": DurationType(),
    "ddl_lock_timeout": DurationType(allow_none=True),
    "statement_timeout": DurationType(allow_none=True),
    "log_format": ChoiceType(LOG_FORMATS),
    "log_level": ChoiceType(LOG_LEVELS),
}


def _metavar(key: str) -> str | None:
    """The placeholder `--help` shows for a flag's value (choices show themselves)."""
    if key == "ddl_lock_retries":
        return "N"
    return None if key in _TYPES else key.split("_")[-1].upper()


def config_options(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """
    Add every flag `command` takes, each with its variable (see `options.OPTIONS`); a shared
    one that does not matter to `command` is accepted but left out of its --help.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(OPTIONS):
            if option.commands and command not in option.commands:
                continue
            help_text = f"{option.help} [env: {option.env}"
            help_text += "]" if option.kind != "str" else f"; default: {option.default}]"
            kwargs: dict[str, Any] = {"default": None, "help": help_text,
                                      "hidden": bool(option.shown) and command not in option.shown}
            if option.kind == "bool":
                kwargs["is_flag"] = True
            elif option.kind == "int":
                kwargs.update(type=click.IntRange(min=option.minimum),
                              metavar="N" if option.key in ("steps", "jobs") else "VERSION")
            elif option.kind == "choice":
                kwargs["type"] = ChoiceType(option.choices)
            elif option.kind == "text":
                kwargs["metavar"] = "TABLE"
            else:
                kwargs.update(type=_TYPES.get(option.key, str), metavar=_metavar(option.key))
            func = click.option(option.flag, *option.aliases, option.key, **kwargs)(func)
        return func

    return decorate


class Command(click.Command):
    """A command whose --help lists its own options first, then the shared ones that matter to it, by section."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        own: list[tuple[str, str]] = []
        shared: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is not None:
                section = SECTIONS.get(param.name or "")
                (shared.setdefault(section, []) if section else own).append(record)
        for title, records in (("Options", own), *shared.items()):
            with formatter.section(title):
                formatter.write_dl(records)


# The --help section of each value every command takes.
SECTIONS = {o.key: o.section for o in OPTIONS if o.section}


class Group(click.Group):
    """bootstrap's commands, with the familiar names of other tools (hidden aliases) and pointed hints."""

    aliases: ClassVar[dict[str, str]] = {"up": "migrate", "create": "new"}
    hints: ClassVar[dict[str, str]] = {
             "version": "`bootstrap --version` prints bootstrap's version; `bootstrap status` shows the database's",
             "init": "`bootstrap new DESCRIPTION` writes a first migration file",
             "dump": "bootstrap keeps no schema file: `pg_dump --schema-only` writes one"}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                            list[str]]:
        if args and args[0] in self.hints and self.get_command(ctx, args[0]) is None:
            ctx.fail(f"No such command '{args[0]}': {self.hints[args[0]]}.")
        return super().resolve_command(ctx, args)


def _early_logging(flags: Mapping[str, Any]) -> tuple[str, str]:
    """Log format and level before settings are validated (bad values fall back)."""
    out = []
    for key, choices, default in (("log_format", LOG_FORMATS, "auto"), ("log_level", LOG_LEVELS, "info")):
        value = flags.get(key) or os.environ.get(f"BOOTSTRAP_{key.upper()}") or default
        try:
            out.append(parse_choice(str(value), choices))
        except ValueError:
            out.append(default)
    return out[0], out[1]


class Done(NamedTuple):
    """
    What a command's work hands back.

    Attributes:
        result: a result value whose `as_log()` fields go into the summary line (or None).
        then: what to do after the summary line (the `exec` of `run`), or None.
        code: the exit code after the summary line (`migrate --dry-run`: 8 when something would run).
    """

    result: Any = None
    then: Callable[[], Any] | None = None
    code: int = 0


Work = Callable[[Settings, Any, dict[str, Any]], "Done | Any"]  # (settings, a structlog logger, flags)


def command(group: click.Group, name: str, *arguments: Callable[[Any], Any], like: str | None = None,
            **settings: Any) -> Callable[[Work], click.Command]:
    """
    Make `work` the click command `name` of `group`: its options (and variables) from
    `options.OPTIONS` (those of command `like`, when given), its `arguments`, its
    docstring as help; run through `run_command`.
    """
    options = like or name

    def decorate(work: Work) -> click.Command:
        def callback(**flags: Any) -> None:
            run_command(options, flags, work)

        for argument in arguments:
            callback = argument(callback)
        return group.command(name=name, help=work.__doc__, cls=Command, **settings)(config_options(options)(callback))

    return decorate


def run_command(command: str, flags: Mapping[str, Any], work: Work) -> NoReturn:
    """
    Run one command: settings, logging, the work, one summary line, the exit code.

    Args:
        command: the command's name, for the summary.
        flags: option values from click.
        work: the command's work, given the settings, a logger and the
            command-specific flags; returns a `Done`, a result value or None.
    """
    started = time.monotonic()
    ctx = click.get_current_context()
    try:
        from .logs import configure_logging, get_logger

        configure_logging(*_early_logging(flags))
        log = get_logger()
    except SignalReceived as exc:  # stopped while the logging library loads: no line to write yet
        ctx.exit(exc.exit_code)

    def elapsed_ms() -> int:
        return round((time.monotonic() - started) * 1000)

    try:
        settings = load_settings(flags)
        configure_logging(settings.log_format, settings.log_level)
        log = get_logger()
        opts = {**{k: v for k, v in flags.items() if k not in OPTION_KEYS}, **command_flags(command, flags,
                                                                                          settings.environ)}
        done = work(settings, log, opts)
        if not isinstance(done, Done):
            done = Done(done)
        fields = done.result.as_log() if done.result is not None else {}
        log.info("bootstrap_completed", command=command, duration_ms=elapsed_ms(), **fields)
        if done.then is not None:
            done.then()
        if done.code:
            ctx.exit(done.code)
    except NotUpToDateError as exc:
        log.info(exc.event, **{**exc.fields, "command": command, "exit_code": int(exc.exit_code)})
        ctx.exit(int(exc.exit_code))
    except BootstrapError as exc:
        fields = {
            **exc.fields,
            "command": command,
            "error": exc.message,
            "exit_code": int(exc.exit_code),
            "duration_ms": elapsed_ms(),
        }
        log.error(exc.event, **fields)
        ctx.exit(int(exc.exit_code))
    except SignalReceived as exc:
        log.warning(
            "bootstrap_interrupted",
            command=command,
            signal=signal.Signals(exc.signum).name,
            exit_code=exc.exit_code,
            duration_ms=elapsed_ms(),
            **exc.fields,
        )
        ctx.exit(exc.exit_code)
    except click.exceptions.Exit:
        raise
    except Exception as exc:  # a bug: say so, with the traceback, and exit 1
        log.error(
            "bootstrap_failed",
            command=command,
            error=f"unexpected {type(exc).__name__}: {exc}",
            exit_code=int(ExitCode.INTERNAL),
            duration_ms=elapsed_ms(),
            exc_info=exc,
        )
        ctx.exit(int(ExitCode.INTERNAL))
    ctx.exit(0)
