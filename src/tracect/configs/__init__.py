"""Built-in run presets (tiny, cpu, gpu) as YAML files."""
