"""Noise schedules and samplers; nothing here knows about the network."""
