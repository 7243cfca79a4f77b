"""A step load, 1 -> 2 -> 4 users, to show how requests queue behind a concurrency-1 instance.

Kept apart from locustfile.py because Locust uses any LoadTestShape it finds in the loaded files:
`run.py --mode step` passes `-f loadtest/locustfile.py,loadtest/step_shape.py`. The stages come from
`--step-users` and `--step-seconds` (defined in locustfile.py); `--run-time` still caps the whole run.
"""

from __future__ import annotations

from locust import LoadTestShape


class StepShape(LoadTestShape):
    """Hold each user count of --step-users for --step-seconds, then stop."""

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options
        users = [int(n) for n in str(options.step_users).split(",") if n.strip()]
        stage = int(self.get_run_time() // options.step_seconds)
        if stage >= len(users):
            return None
        # Spawn the whole step at once so each stage starts at its full user count.
        return users[stage], float(max(users))
