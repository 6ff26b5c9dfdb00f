"""Station runtime: the inspection protocol, the agent loop, backends, I/O and the `indus` CLI."""
