"""Persisting and reproducing runs: rclone (its one owner), push/pull/remote, reproduce."""
