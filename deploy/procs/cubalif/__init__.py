"""CubaLIF: the current-based LIF of event-driven BP (SRM) that resets both current and voltage on a spike."""
