"""mbpo_ros.core: MBPO in pure PyTorch/NumPy (no rclpy, no mujoco).

Modules: ``config`` (hyper-parameters, presets), ``ensemble`` (probabilistic dynamics ensemble),
``sac`` (SAC, stacked twin critics), ``buffer`` (ring buffers), ``rollout`` (branched model
rollouts), ``policy`` (NumPy PolicySnapshot), ``trainer`` (the MBPO loop), ``tasks`` (termination /
reward functions, task registry), ``reach`` (the Reach task: observation, reward, success),
``safety`` (command clipping, rate limits, watchdog, e-stop), ``trainer_process`` (MBPO in a child
process beside the control loop), ``allocator`` (glibc heap retention for tensor churn), ``gemm``
(narrow matrix products in the form MKL serves fast).

This package imports nothing on purpose: ``mbpo_ros.core.policy`` and ``mbpo_ros.core.config``
must stay importable in a control process without pulling in torch.
"""
