# %% [markdown]
# # Exploring an Exo proc with exo-egraph
#
# Run the cells in Jupyter (VS Code and JupyterLab read `# %%` cells; `jupytext --to ipynb`
# makes a notebook), or the whole file with `python examples/explore.py`.

# %%
from __future__ import annotations

from exo import DRAM, proc

from exo_egraph import Budget, LoopRuleConfig, explore, target_names

print("targets:", ", ".join(target_names()))


# %% [markdown]
# A kernel written as in Exo's own examples: a 64×64×64 f32 matmul.

# %%
@proc
def matmul(A: f32[64, 64] @ DRAM, B: f32[64, 64] @ DRAM, C: f32[64, 64] @ DRAM):
    for i in seq(0, 64):
        for j in seq(0, 64):
            C[i, j] = 0.0
            for k in seq(0, 64):
                C[i, j] += A[i, k] * B[k, j]


# %% [markdown]
# Saturate, extract the three cheapest schedules, replay each through Exo, and validate the best
# one (compiled C, run against the input proc, bit for bit). In Jupyter the result shows as a table.

# %%
result = explore(matmul, "cpu", budget=Budget(seconds=10), top_k=3)
result

# %% [markdown]
# The schedule is a script of Exo calls to paste into your code, and the scheduled proc itself.

# %%
print(result.script)
print(result.proc)

# %% [markdown]
# Every candidate with its cost, and what saturation did per iteration.

# %%
for rank, c in enumerate(result.candidates, 1):
    print(rank, f"{c.cost:,.0f}", len(c.replayed.steps), "steps")
for it in result.stats.history:
    print(it.index, it.enodes, dict(it.matches))

# %% [markdown]
# Rules are configurable: here, only loop reorders and splits.

# %%
narrow = explore(matmul, budget=Budget(seconds=10), rules=LoopRuleConfig(unroll=False, fission=False, fuse=False))
print(narrow.stats.schedules, "schedules held with fewer rules, against", result.stats.schedules)

# %% [markdown]
# The growth of the e-graph and the cost of each candidate (needs matplotlib).

# %%
import matplotlib

matplotlib.use("Agg")  # headless here; drop this line in Jupyter
axes = result.plot()
axes[0].figure.savefig("explore.png", dpi=80)
