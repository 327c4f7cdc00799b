"""SubLIF: a LIF without current state, with subtractive or zero reset and a ≥ or > threshold."""
