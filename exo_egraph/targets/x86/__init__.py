"""The ``x86`` target: register-tiled AVX2 / AVX-512 micro-kernels from Exo's own x86 instructions."""
