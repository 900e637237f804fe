"""What a run records about its world: collectors (the extension point), environment, packages,
seeds and upstream lineage."""
