"""The reinforcement-learning core, task-agnostic: it knows observations, heads and rewards,
not models or devices (it solves CartPole as well as the compression task).

- ``policy``: the shared trunk and its heads (categorical / Gaussian, per-step masks);
- ``buffer``: the typed rollout buffer and GAE;
- ``ppo``: the clipped-objective update (CleanRL's order, every hyperparameter in
  ``ppo_config``) and ``ppo_checkpoint``: exact save / resume;
- ``gym_adapter``: Gymnasium environments driven through the same API.
"""
