"""A stage's configuration: the dataclass schema, the plain path (no OmegaConf) and the OmegaConf
path (composition, overrides, interpolation)."""
