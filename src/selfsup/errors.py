"""The errors that mean bad input from the user: the CLI prints their message, not a traceback."""

from selfsup.ablate.run import AblationError
from selfsup.config import ConfigError
from selfsup.data.dataset import DataError
from selfsup.engine.checkpoint import CheckpointError
from selfsup.engine.pretrain import TrainingDiverged
from selfsup.eval.context import EvalError
from selfsup.models.io import BackboneFileError

USER_ERRORS = (ConfigError, DataError, CheckpointError, BackboneFileError, TrainingDiverged, EvalError,
               AblationError)
