"""The ``gemmini`` target: Exo's Gemmini instructions on the systolic-array accelerator, run on a C model.

The facts (`config`: sizes and timing constants from the model's header) sit at the bottom; above
them the kernel's matmul pattern and tile plans (`pattern`, `plans`) and instruction selection
(`selection`); the rules (`exo_egraph.rewrites.gemmini`), the cost model and plan extraction
(`exo_egraph.extract.gemmini_cost`, `.plan_extract`), replay (`replay`) and the C model
(`model`) use them. `target` hands them to the line as one `GemminiTarget`.
"""
