"""Datasets: layout and reports, validation, prepare (resample, window, flow), cache and windows."""
