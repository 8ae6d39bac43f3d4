"""How a measurement is made, apart from any runtime: the timing engine, interleaved rounds and their statistics,
the machine's noise, memory, energy, arithmetic peak, and fidelity to PyTorch.

Nothing here imports an adapter: runtimes hand the engine a callable, and the runner hands it a config.
"""
