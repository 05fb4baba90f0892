"""mbpo_ros.core: MBPO in pure PyTorch/NumPy (no rclpy, no mujoco).

Modules: ``config`` (hyper-parameters, presets), ``ensemble`` (probabilistic dynamics ensemble),
``sac`` (SAC, stacked twin critics), ``buffer`` (ring buffers), ``rollout`` (branched model
rollouts), ``policy`` (NumPy PolicySnapshot), ``trainer`` (the MBPO loop), ``tasks`` (termination /
reward functions).

This package imports nothing on purpose: ``mbpo_ros.core.policy`` and ``mbpo_ros.core.config``
must stay importable in a control process without pulling in torch.
"""
