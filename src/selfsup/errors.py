"""The base class of the errors that mean bad input from the user: the CLI prints their message in one line, not a
traceback. A leaf module: every layer's error classes (ConfigError, DataError, BackboneFileError, CheckpointError,
TrainingDiverged, EvalError, AblationError, ...) derive from it, and nothing here imports them."""


class SelfsupError(Exception):
    """Bad input (a file, an option, a run folder): the message names it and the fix."""


USER_ERRORS = (SelfsupError,)  # what the CLI catches
