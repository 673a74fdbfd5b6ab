"""Model organisms: small models trained on purpose to carry hidden goals, with honest twins and decoys."""
