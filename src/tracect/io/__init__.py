"""Reading and writing volumes (NIfTI, NRRD, DICOM) with their geometry."""

from tracect.io.volume import CANONICAL_CODES, Volume

__all__ = ["CANONICAL_CODES", "Volume"]
from tracect.io.dicom import DicomError, read_dicom_series, write_dicom_series  # noqa: E402
from tracect.io.readers import VolumeReadError, read_mask, read_volume, write_volume  # noqa: E402

__all__ += ["DicomError", "VolumeReadError", "read_dicom_series", "read_mask", "read_volume",
            "write_dicom_series", "write_volume"]
