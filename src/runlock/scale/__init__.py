"""From one call to thousands: the on-disk task store, task maps and execution backends. Knows
nothing of runs: it executes functions over tasks."""
