"""Built-in phantom: synthetic torso CTs with a `total` label mask, a radiology report and its findings."""

from tracect.phantom.generator import PhantomCase, PhantomConfig, make_case, make_mask, write_dataset

__all__ = ["PhantomCase", "PhantomConfig", "make_case", "make_mask", "write_dataset"]
