"""tracect: 3D CT from a segmentation mask and a radiology report, with a 2D frame-pair diffusion model."""

__version__ = "0.1.0"
