"""Exceptions that the CLI reports as one line instead of a traceback."""

from tracect.data.layout import DatasetError
from tracect.data.reports import ReportsError
from tracect.data.validate import CaseError
from tracect.io.dicom import DicomError
from tracect.io.readers import VolumeReadError
from tracect.labels.vocabulary import UnknownLabelsError
from tracect.model.weights import CheckpointError
from tracect.generate.masks import MaskError
from tracect.evaluate.entries import EvaluationError
from tracect.utils.paths import UnsafePathError
from tracect.utils.preflight import PreflightError


class CommandError(Exception):
    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


USER_ERRORS = (CommandError, EvaluationError, PreflightError, UnsafePathError, CheckpointError, MaskError, PermissionError, DatasetError, ReportsError, CaseError, DicomError, VolumeReadError,
               UnknownLabelsError, FileExistsError, FileNotFoundError, ValueError)
