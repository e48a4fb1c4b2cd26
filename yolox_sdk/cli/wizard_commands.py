"""``yolox-sdk config wizard``: questions in, a commented config that trains out.

The command asks (with ``questionary``) for the dataset, the device and how long to train, shows what it
found and what it proposes, and writes the YAML file; the proposals and their reasons come from
``yolox_sdk.config.wizard``. Every question can be pre-answered by a flag, and ``--yes`` takes the
proposal for whatever is left, without a terminal. Nothing is written until the last step, and then
atomically, after the file has loaded and validated with the SDK's own loader; Ctrl-C leaves no file.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import click

from yolox_sdk.cli.common import handle_errors
from yolox_sdk.errors import ConfigError, DatasetError, YoloxSdkError

CHANGE = "change"


class LazyModule:
    """A module imported on first attribute access.

    ``yolox_sdk.config.wizard`` imports the config package, and with it the plugin manager; the CLI
    registers this command at start-up, and ``yolox-sdk --help`` must stay fast and work while a plugin is
    broken (``cli.main``), so the wizard's module loads only when the command runs.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)


if TYPE_CHECKING:
    from yolox_sdk.config import wizard
else:
    wizard = LazyModule("yolox_sdk.config.wizard")


class Cancelled(Exception):
    """The user declined a question that ends the wizard (overwriting a file, writing the config)."""


@click.command("wizard")
@click.argument("out", type=click.Path(path_type=Path), default="config.yaml", required=False)
@click.option("--data", "data_path", metavar="PATH", help="Dataset folder, annotation file or catalog name.")
@click.option(
    "--format", "format_name", default=None, help="Dataset format, for a folder that looks like several."
)
@click.option("--device", "device_name", default=None, help="cpu, cuda, cuda:N, mps or auto (the fastest).")
@click.option("--epochs", type=click.IntRange(1, 100_000), default=None, help="Train this many epochs.")
@click.option("--time-budget", default=None, metavar="DURATION", help="Train for this long: 90s, 20m, 1h30m.")
@click.option("--yes", "-y", is_flag=True, help="Accept every proposal without asking (needs --data).")
@click.option(
    "--force", is_flag=True, help="Overwrite OUT if it exists (with --yes it is refused otherwise)."
)
@click.option(
    "--probe-steps",
    type=click.IntRange(0, 6),
    default=None,
    help="Training steps timed to estimate the speed (default 2); 0 skips the measurement.",
)
@handle_errors
def wizard_command(
    out: Path,
    data_path: str | None,
    format_name: str | None,
    device_name: str | None,
    epochs: int | None,
    time_budget: str | None,
    yes: bool,
    force: bool,
    probe_steps: int | None,
) -> None:
    """Ask about the dataset, device and time, then write a commented config to OUT (default: config.yaml).

    It detects the dataset's format, classes and splits, times a few real training steps of the model it
    proposes, and chooses the model variant, input size, batch size and epochs from the data, the device
    and that speed; each value's comment in OUT says why. Then: yolox-sdk run OUT.
    """
    from yolox_sdk.config.durations import parse_duration

    if epochs is not None and time_budget is not None:
        raise click.UsageError("Give --epochs or --time-budget, not both.")
    if time_budget is not None and parse_duration(time_budget) is None:
        raise click.BadParameter(
            f"{time_budget!r} is not a duration; write it like 90s, 20m or 1h30m.", param_hint="--time-budget"
        )
    if yes and not data_path:
        raise click.UsageError("--yes takes every proposal but cannot guess the dataset: add --data PATH.")
    if not yes and not sys.stdin.isatty():
        raise ConfigError(
            "The wizard asks its questions in a terminal, and standard input is not one. Run it in a "
            "terminal, or pass --yes with --data PATH (and --device, --epochs or --time-budget as wanted) to "
            "take the proposals without questions."
        )
    session = Session(out, yes, force, wizard.PROBE_STEPS if probe_steps is None else probe_steps)
    try:
        session.run(data_path, format_name, device_name, epochs, time_budget)
    except (KeyboardInterrupt, EOFError):
        click.secho(f"\nCancelled: nothing was written to {out}.", fg="yellow", err=True)
        sys.exit(130)
    except Cancelled as reason:
        click.secho(f"{reason} Nothing was written.", fg="yellow", err=True)
        sys.exit(1)


@attrs.define
class Session:
    """One run of the wizard: where it writes, how it measures, the questions it asks (none with --yes)."""

    out: Path
    yes: bool
    force: bool
    probe_steps: int
    # Each setting's measurement, by device, model, input size and batch: measured once per session.
    measured: dict[tuple[str, str, int, int], Any] = attrs.field(factory=dict)

    def run(
        self,
        data_path: str | None,
        format_name: str | None,
        device_name: str | None,
        epochs: int | None,
        time_budget: str | None,
    ) -> None:
        """Output path, dataset, device, speed, how long, the proposal to confirm or change; then the
        file, written only when it loads and validates."""
        check_output_path(self.out)
        self.confirm_overwrite()
        facts = self.dataset(data_path, format_name)
        device = self.device(device_name)
        proposal = wizard.propose(facts, device)
        speed = self.measure(facts, device, proposal)
        proposal = with_measured_batch(proposal, speed)
        budget, proposal, speed = self.budget(facts, device, proposal, speed, epochs, time_budget)
        while not self.yes:
            show_proposal(proposal, budget)
            answer = self.select(
                f"Write this config to {self.out}?",
                [("Yes, write it", "write"), ("Change the model, input size or batch size", CHANGE)],
                "write",
            )
            if answer == "write":
                break
            proposal, speed, budget = self.change(facts, device, proposal, speed, budget)
        if self.yes:
            show_proposal(proposal, budget)
        estimate = estimate_text(facts, proposal, budget, speed)
        text = wizard.render_config(
            facts,
            device,
            proposal,
            budget,
            speed,
            estimate,
            self.out,
            wizard.run_name_for(facts, proposal.model.value),
        )
        write_checked(self.out, text)
        click.secho(f"Wrote {self.out}.", fg="green")
        click.echo(f"Train, evaluate and export with:\n  yolox-sdk run {self.out}")

    # ------------------------------------------------------------------------------------ questions

    def ask(self, question: Any) -> Any:
        """``question``'s answer; Ctrl-C raises ``KeyboardInterrupt`` (questionary's ``ask`` swallows it)."""
        return question.unsafe_ask()

    def select(self, message: str, options: list[tuple[str, Any]], default: Any) -> Any:
        import questionary

        choices = [questionary.Choice(title, value) for title, value in options]
        chosen = next((choice for choice in choices if choice.value == default), choices[0])
        return self.ask(questionary.select(message, choices=choices, default=chosen))

    def text(self, message: str, default: str, check: Any) -> str:
        import questionary

        return str(self.ask(questionary.text(message, default=default, validate=check))).strip()

    def confirm_overwrite(self) -> None:
        if not self.out.exists() or self.force:
            return
        if self.yes:
            raise ConfigError(
                f"{self.out} already exists. --yes never overwrites a file on its own: add --force to "
                "replace it, or give another path."
            )
        import questionary

        if not self.ask(questionary.confirm(f"{self.out} already exists. Overwrite it?", default=False)):
            raise Cancelled(f"Kept {self.out}; run again with another path.")

    def dataset(self, data_path: str | None, format_name: str | None) -> wizard.DatasetFacts:
        """The dataset's facts; a path that holds none is asked again (or ends the wizard under --yes)."""
        import questionary

        path = data_path
        while True:
            if path is None:
                path = str(
                    self.ask(
                        questionary.path(
                            "Dataset folder (or annotation file, or a catalog name such as bccd):",
                            validate=lambda text: bool(text.strip()) or "Type a path.",
                        )
                    )
                )
            click.echo(f"Reading {path} ...")
            try:
                facts = wizard.inspect_dataset(path, format_name)
                if len(facts.formats) > 1 and format_name is None:
                    facts = self.choose_format(path, facts)
                break
            except YoloxSdkError as error:  # DatasetError mostly; a format's options can raise ConfigError
                if self.yes:
                    raise
                click.secho(f"{error}", fg="red")
                path = None
        click.secho(f"Found: {wizard.summary_line(facts)}", fg="cyan")
        names = ", ".join(facts.class_names[:12]) + (", ..." if len(facts.class_names) > 12 else "")
        click.echo(f"Classes: {names}")
        if not facts.val_split:
            click.secho(
                "No validation split: training will run without validation. "
                f"`yolox-sdk data split {facts.path}` makes one.",
                fg="yellow",
            )
        return facts

    def choose_format(self, path: str, facts: wizard.DatasetFacts) -> wizard.DatasetFacts:
        found = ", ".join(facts.formats)
        if self.yes:
            if facts.ambiguous:
                raise DatasetError(
                    f"{path} looks like several dataset formats equally ({found}). Pass --format with the "
                    "one to read."
                )
            click.secho(
                f"{path} looks like several dataset formats ({found}); reading it as {facts.format}, the "
                "most specific match. Pass --format to choose another.",
                fg="yellow",
            )
            return facts
        click.secho(f"{path} holds files of several dataset formats: {found}.", fg="yellow")
        chosen = self.select(
            "Which format should training read?",
            [(name, name) for name in facts.formats],
            facts.format,
        )
        return facts if chosen == facts.format else wizard.inspect_dataset(path, chosen)

    def device(self, device_name: str | None) -> wizard.DeviceChoice:
        devices = wizard.available_devices()
        if device_name is not None:
            return pick_device(devices, device_name)
        if self.yes or len(devices) == 1:
            click.echo(f"Device: {devices[0].description}")
            return devices[0]
        return self.select(
            "Train on which device?", [(device.description, device) for device in devices], devices[0]
        )

    def measure(
        self, facts: wizard.DatasetFacts, device: wizard.DeviceChoice, proposal: wizard.Proposal
    ) -> wizard.SpeedMeasurement | None:
        """A few timed training steps of the proposal; ``None`` when skipped or when they fail (said).
        Each setting is measured once: a budget asked again revisits settings already timed."""
        if self.probe_steps == 0:
            return None
        model, size = proposal.model.value, proposal.input_size.value
        key = (device.name, model, size, proposal.batch_size.value)
        if key in self.measured:
            return self.measured[key]
        click.echo(
            f"Measuring training speed: {model} at {size} px, batch {proposal.batch_size.value}, on "
            f"{device.name} (a few seconds) ..."
        )
        try:
            speed = wizard.measure_training_speed(
                facts, device, model, size, proposal.batch_size.value, proposal.amp.value, self.probe_steps
            )
        except (YoloxSdkError, RuntimeError) as error:  # RuntimeError: torch's (a CUDA failure, no memory)
            click.secho(
                f"The speed measurement failed, so the proposal has no time estimate: {error}", fg="yellow"
            )
            return None
        click.echo(f"  {speed.describe()} in {speed.seconds:.0f} s")
        self.measured[key] = speed
        return speed

    def budget(
        self,
        facts: wizard.DatasetFacts,
        device: wizard.DeviceChoice,
        proposal: wizard.Proposal,
        speed: wizard.SpeedMeasurement | None,
        epochs: int | None,
        time_budget: str | None,
    ) -> tuple[wizard.Budget, wizard.Proposal, wizard.SpeedMeasurement | None]:
        """How long to train (asked, or from the flags); a budget too short for the proposed model steps
        down to a cheaper one, measured again."""
        from yolox_sdk.config.durations import parse_duration

        proposed = proposal.epochs.value
        if epochs is None and time_budget is None and not self.yes:
            per_run = estimate_for(facts, proposed, speed)
            answer = self.select(
                "How long should training run?",
                [
                    (f"{proposed} epochs, the proposal ({per_run})", "proposed"),
                    ("Another number of epochs", "epochs"),
                    ("A time budget (e.g. 20m, 1h30m): the trainer fits the epochs to it", "budget"),
                ],
                "proposed",
            )
            if answer == "epochs":
                epochs = int(self.text("Epochs:", str(proposed), check_epochs))
            elif answer == "budget":
                suggestion = wizard.default_budget(seconds_for(facts, proposed, speed) or 1200)
                time_budget = self.text("Time budget:", suggestion, check_budget)
            else:
                epochs = proposed
        if time_budget is None:
            count = epochs or proposed
            why = proposal.epochs.reason if count == proposed else "asked for"
            proposal = attrs.evolve(proposal, eval_interval=wizard.propose_eval_interval(count))
            return wizard.Budget(epochs=count, reason=why), proposal, speed
        first, first_speed = proposal, speed
        while True:
            seconds = parse_duration(time_budget) or 0.0
            proposal, speed = self.fit_budget(facts, device, first, first_speed, seconds)
            budget = budget_choice(facts, proposal, speed, time_budget, seconds)
            if not budget.too_short or speed is None or self.yes:
                return budget, with_budget_interval(proposal, budget), speed
            epoch = wizard.estimate_seconds(facts, speed.images_per_second, 1, 1)
            time_budget = self.text(
                f"Time budget (one epoch of {proposal.model.value} at {proposal.input_size.value} px takes "
                f"{wizard.format_seconds(epoch)} here):",
                wizard.default_budget(epoch * wizard.MIN_BUDGET_EPOCHS),
                check_budget,
            )

    def fit_budget(
        self,
        facts: wizard.DatasetFacts,
        device: wizard.DeviceChoice,
        proposal: wizard.Proposal,
        speed: wizard.SpeedMeasurement | None,
        seconds: float,
    ) -> tuple[wizard.Proposal, wizard.SpeedMeasurement | None]:
        """Step down to a cheaper model or input size (``wizard.fitting_setting``) while the budget holds
        under ``MIN_BUDGET_EPOCHS`` epochs of the measured one, measuring each setting tried."""
        from yolox_sdk.config.recipes import BUDGET_MAX_EPOCHS

        interval = wizard.propose_eval_interval(min(proposal.epochs.value, BUDGET_MAX_EPOCHS)).value
        while speed is not None:
            model, size = proposal.model.value, proposal.input_size.value
            smaller = wizard.fitting_setting(facts, model, size, speed.images_per_second, seconds, interval)
            if smaller is None:
                break
            fits = wizard.epochs_in_budget(facts, speed.images_per_second, seconds, interval)
            click.secho(
                f"The budget holds about {fits} epoch{wizard.plural(fits)} of {model} at {size} px; "
                f"trying {smaller[0]} at {smaller[1]} px.",
                fg="yellow",
            )
            why = (
                f"the time budget holds {fits} epoch{wizard.plural(fits)} of {model} at {size} px, under "
                f"{wizard.MIN_BUDGET_EPOCHS}"
            )
            stepped = wizard.propose(facts, device, *smaller)
            stepped = attrs.evolve(
                stepped,
                model=wizard.Choice(smaller[0], why) if smaller[0] != model else proposal.model,
                input_size=wizard.Choice(smaller[1], why) if smaller[1] != size else proposal.input_size,
            )
            measured = self.measure(facts, device, stepped)
            if measured is None:
                break
            if wizard.epochs_in_budget(facts, measured.images_per_second, seconds, interval) < fits:
                break  # slower than the larger setting (a busy machine): keep that one
            proposal, speed = with_measured_batch(stepped, measured), measured
        return proposal, speed

    def change(
        self,
        facts: wizard.DatasetFacts,
        device: wizard.DeviceChoice,
        proposal: wizard.Proposal,
        speed: wizard.SpeedMeasurement | None,
        budget: wizard.Budget,
    ) -> tuple[wizard.Proposal, wizard.SpeedMeasurement | None, wizard.Budget]:
        """The user's own model, input size and batch size (the proposals as defaults), measured again."""
        model = self.select(
            "Model variant:", [(name, name) for name in wizard.VARIANTS], proposal.model.value
        )
        size = int(
            self.text("Input size (pixels, a multiple of 32):", str(proposal.input_size.value), check_size)
        )
        batch = int(self.text("Batch size:", str(proposal.batch_size.value), check_batch))
        changed = attrs.evolve(
            proposal,
            model=answered(proposal.model, model),
            input_size=answered(proposal.input_size, size),
            batch_size=answered(proposal.batch_size, batch),
        )
        if changed != proposal:
            speed = self.measure(facts, device, changed)
            changed = with_measured_batch(changed, speed)
        if budget.time_budget is not None:
            from yolox_sdk.config.durations import parse_duration

            seconds = parse_duration(budget.time_budget) or 0.0
            budget = budget_choice(facts, changed, speed, budget.time_budget, seconds)
            changed = with_budget_interval(changed, budget)
        return changed, speed, budget


# ----------------------------------------------------------------------------------------- helpers


def answered(proposed: wizard.Choice, value: Any) -> wizard.Choice:
    """The proposal kept with its reason, or the user's own value."""
    return proposed if value == proposed.value else wizard.Choice(value, "chosen in the wizard")


def check_output_path(path: Path) -> None:
    """Refuse, before any question, an output path the wizard could not write.

    A folder, a path under a file, or a folder where a test file cannot be created (permissions, a
    read-only file system) is a ``ConfigError`` naming the path; a missing parent folder is created at the
    end, so only its nearest existing ancestor is tried.
    """
    if path.is_dir():
        raise ConfigError(
            f"{path} is a folder; give the path of the YAML file to write, e.g. {path / 'config.yaml'}."
        )
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"Cannot write {path}: {ancestor} is a file, not a folder. Give another path.")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"Cannot write {path}: the file is not writable. Give another path.")
    try:
        with tempfile.NamedTemporaryFile(dir=ancestor, prefix=".yolox-sdk-wizard-", suffix=".tmp"):
            pass
    except OSError as error:
        raise ConfigError(
            f"Cannot write {path}: {ancestor} does not accept new files ({error.strerror or error}). Give a "
            "path in a folder you can write to."
        ) from None


def write_checked(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` only once it loads and validates as a config (the SDK's own loader).

    A temporary file beside ``path`` is loaded, then renamed over it: an interrupted or failed wizard
    leaves no file, and never half of one.
    """
    from yolox_sdk.config.loader import load_config

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 would make the config private
        try:
            load_config(temporary)
        except ConfigError as error:
            raise YoloxSdkError(
                f"The config the wizard wrote does not validate, which is a bug in the wizard; please report "
                f"it. {error}"
            ) from error
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def pick_device(devices: list[wizard.DeviceChoice], name: str) -> wizard.DeviceChoice:
    """``--device``'s choice among the machine's devices; one it lacks is a usage error listing them."""
    wanted = name.strip().lower()
    if wanted == "auto":
        return devices[0]
    if wanted == "cuda":
        wanted = "cuda:0"
    for device in devices:
        if device.name == wanted:
            return device
    have = ", ".join(device.name for device in devices)
    raise click.BadParameter(
        f"{name!r} is not a device of this machine; it has {have}.", param_hint="--device"
    )


def with_measured_batch(proposal: wizard.Proposal, speed: wizard.SpeedMeasurement | None) -> wizard.Proposal:
    """The proposal with the batch the probe could run, where an out-of-memory error lowered it."""
    if speed is None or speed.batch_size == proposal.batch_size.value:
        return proposal
    why = (
        f"the largest batch that fitted in the GPU's memory when measured (from {proposal.batch_size.value})"
    )
    return attrs.evolve(proposal, batch_size=wizard.Choice(speed.batch_size, why))


def seconds_for(
    facts: wizard.DatasetFacts, epochs: int, speed: wizard.SpeedMeasurement | None
) -> float | None:
    """The estimated wall time of ``epochs`` epochs at the measured speed (``None`` unmeasured)."""
    if speed is None:
        return None
    interval = wizard.propose_eval_interval(epochs).value
    return wizard.estimate_seconds(facts, speed.images_per_second, epochs, interval)


def estimate_for(facts: wizard.DatasetFacts, epochs: int, speed: wizard.SpeedMeasurement | None) -> str:
    """``about 12 min here``, or ``speed not measured``."""
    seconds = seconds_for(facts, epochs, speed)
    return f"{wizard.format_seconds(seconds)} here" if seconds is not None else "speed not measured"


def budget_choice(
    facts: wizard.DatasetFacts,
    proposal: wizard.Proposal,
    speed: wizard.SpeedMeasurement | None,
    time_budget: str,
    seconds: float,
) -> wizard.Budget:
    """The ``training.time_budget`` entry; its comment gives the epochs it holds at the measured speed."""
    from yolox_sdk.config.recipes import BUDGET_MAX_EPOCHS

    written = time_budget.strip()  # as the user wrote it: the trainer parses the same forms
    if speed is None:
        return wizard.Budget(
            time_budget=written,
            reason=f"the trainer times its steps and fits up to {BUDGET_MAX_EPOCHS} epochs in it",
            expected_epochs=min(BUDGET_MAX_EPOCHS, proposal.epochs.value),
        )
    interval = wizard.propose_eval_interval(BUDGET_MAX_EPOCHS).value
    fits = min(BUDGET_MAX_EPOCHS, wizard.epochs_in_budget(facts, speed.images_per_second, seconds, interval))
    if fits < 1:
        epoch = wizard.format_seconds(wizard.estimate_seconds(facts, speed.images_per_second, 1, 1))
        click.secho(
            f"The budget {written} is shorter than one epoch at the measured speed ({epoch} each): "
            "training will refuse it unless the machine is faster then. Consider a longer budget.",
            fg="yellow",
        )
        reason = f"under one epoch at the measured speed ({epoch} per epoch)"
    else:
        reason = (
            f"about {fits} epoch{wizard.plural(fits)} at the measured speed (the trainer measures again; "
            f"at most {BUDGET_MAX_EPOCHS})"
        )
    return wizard.Budget(time_budget=written, reason=reason, expected_epochs=max(1, fits), too_short=fits < 1)


def with_budget_interval(proposal: wizard.Proposal, budget: wizard.Budget) -> wizard.Proposal:
    """The validation interval for the epochs a time budget should hold."""
    expected = budget.expected_epochs or proposal.epochs.value
    return attrs.evolve(proposal, eval_interval=wizard.propose_eval_interval(expected))


def estimate_text(
    facts: wizard.DatasetFacts,
    proposal: wizard.Proposal,
    budget: wizard.Budget,
    speed: wizard.SpeedMeasurement | None,
) -> str:
    if budget.time_budget is not None:
        return f"the time budget, {budget.time_budget}"
    seconds = seconds_for(facts, budget.epochs or proposal.epochs.value, speed)
    if seconds is None:
        return "not measured"
    return f"{wizard.format_seconds(seconds)} for {budget.epochs} epochs on this machine"


def show_proposal(proposal: wizard.Proposal, budget: wizard.Budget) -> None:
    rows = [
        ("model", proposal.model),
        ("input size", proposal.input_size),
        ("batch size", proposal.batch_size),
    ]
    length = (
        wizard.Choice(budget.time_budget, budget.reason)
        if budget.time_budget is not None
        else wizard.Choice(f"{budget.epochs} epoch{wizard.plural(budget.epochs or 0)}", budget.reason)
    )
    rows.append(("time budget" if budget.time_budget is not None else "epochs", length))
    rows.append(
        (
            "validation every",
            wizard.Choice(
                f"{proposal.eval_interval.value} epoch{wizard.plural(proposal.eval_interval.value)}",
                proposal.eval_interval.reason,
            ),
        )
    )
    click.secho("Proposed settings:", bold=True)
    for label, choice in rows:
        click.echo(f"  {label:<17} {str(choice.value):<13} {choice.reason}")


def check_epochs(text: str) -> bool | str:
    return (text.strip().isdigit() and 1 <= int(text) <= 100_000) or "A whole number from 1 to 100000."


def check_budget(text: str) -> bool | str:
    from yolox_sdk.config.durations import parse_duration

    return parse_duration(text) is not None or "A duration such as 90s, 20m or 1h30m."


def check_size(text: str) -> bool | str:
    ok = text.strip().isdigit() and int(text) % 32 == 0 and 64 <= int(text) <= wizard.MAX_INPUT_SIZE
    return ok or f"A multiple of 32 from 64 to {wizard.MAX_INPUT_SIZE}."


def check_batch(text: str) -> bool | str:
    return (text.strip().isdigit() and 1 <= int(text) <= 4096) or "A whole number from 1 to 4096."
