"""The user-facing error type.

Every error caused by input a user can fix (a config key, a data file, a model directory) is a
`LorasafeError` whose message is one paragraph naming the file, line or key and the fix. The CLI
prints it without a traceback; everything else is a bug and keeps its traceback.
"""


class LorasafeError(Exception):
    """An error the user can fix; the message says what and how."""


class ConfigError(LorasafeError):
    """A config file or override that does not validate."""


class DataError(LorasafeError):
    """A dataset file that is missing, empty or malformed."""


class TargetError(LorasafeError):
    """An adapter target that does not exist in the model."""


class ChatTemplateError(LorasafeError):
    """A tokenizer whose chat template cannot render the think-format contract."""


class TrainingDiverged(LorasafeError):
    """Training produced a non-finite loss."""


class SandboxUnavailable(LorasafeError):
    """Code scoring was asked to run model-written code where no kernel sandbox is available."""


def require(module: str, needed_for: str, install: str) -> object:
    """Import an optional package, or raise one clear line: what needs it and how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise LorasafeError(f"{needed_for} needs the {module} package, which is not installed: {install}.") from None
