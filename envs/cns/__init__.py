"""Drug-like CNS molecules: QED, synthetic accessibility and blood-brain-barrier permeability."""
