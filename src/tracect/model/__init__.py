"""The frame-pair denoiser and the frozen text encoder."""
