"""QM9 molecules: polarizability, HOMO-LUMO gap and internal energy from a SMILES GPT-2 prior."""
