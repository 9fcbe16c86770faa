"""causalscene: causal generative modelling of images.

An explicit causal DAG over scene attributes (``dags/*.yaml``), exact discrete queries on it
(condition, intervene, counterfactual), a Pyro conv VAE conditioned on the DAG, and two analyses
of the learned latent space: CAGE (generative treatment effects) and counterfactual hybridization.
"""

from causalscene.dag import CausalDAG, DAGError

__version__ = "0.1.0"
__all__ = ["CausalDAG", "DAGError", "__version__"]
