"""A step load, 1 -> 2 -> 4 users, to show how requests queue behind a concurrency-1 instance.

Kept apart from locustfile.py because Locust uses any LoadTestShape it finds in the loaded files:
`run.py --mode step` passes `-f loadtest/locustfile.py,loadtest/step_shape.py`. The stages come from
`--step-users` and `--step-seconds` (defined in locustfile.py); `--run-time` caps the whole run.
"""

from __future__ import annotations

from locust import LoadTestShape


class StepShape(LoadTestShape):
    """Hold each user count of --step-users for --step-seconds, then stop."""

    # Locust ignores --run-time under a shape unless the shape reads it; this one does.
    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options
        users = [int(n) for n in str(options.step_users).split(",") if n.strip()]
        elapsed = self.get_run_time()
        stage = int(elapsed // options.step_seconds)
        if stage >= len(users) or (options.run_time and elapsed >= options.run_time):
            return None
        # Spawn the whole step at once so each stage starts at its full user count.
        return users[stage], float(max(users))
