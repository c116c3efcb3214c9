"""The per-slice autoencoder: full-resolution CT slices <-> the latent frames the latent model diffuses."""
