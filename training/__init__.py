"""Training sparse encoders (`lsr train`): losses, ensemble teachers, training data and the trainer; installed as
``lsr.training``. Encoders, indexing and evaluation come from the core."""
