"""What the worker processes load, as a user's project would: each system's tasks (or
processors) for the two benchmark jobs, a no-op and a 1 ms sleep, both of which only write
their stamp line (bench.jobs). These modules import their queue library, the stdlib and
bench.jobs, nothing of the harness, so the workers' memory is the system's own."""
