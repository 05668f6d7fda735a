"""One module per system benchmarked; bench.run lists them. Worker processes import these
modules for their task definitions, so a module imports only its own queue library, the
stdlib and bench.harness / bench.jobs (bench.stores is imported where a store is set up)."""
