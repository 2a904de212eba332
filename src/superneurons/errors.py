"""Exceptions the library raises for bad input, so the CLI can print them without a traceback."""


class SuperNeuronsError(Exception):
    """Base class: a user-facing error whose message names the bad value and the fix."""


class DataError(SuperNeuronsError, ValueError):
    """A bad sample, data file or image."""


class StoreError(SuperNeuronsError):
    """An activation store that is missing, corrupt, or belongs to another model/template."""


class ModelError(SuperNeuronsError):
    """A model that cannot be loaded or does not match what an artifact expects."""


class ConfigError(DataError, StoreError):
    """An option with a value outside its valid choices (it names the option and the choices).

    Also a DataError and a StoreError, so code catching the error type of the step the option
    belongs to (capture options used to raise StoreError, selection options DataError) still does.
    """


class InUseError(SuperNeuronsError):
    """An output (store folder, classifier folder, predictions file) that another live process is writing."""
