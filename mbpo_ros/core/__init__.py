"""mbpo_ros.core: MBPO in pure PyTorch/NumPy (no rclpy, no mujoco).

Modules: ``config`` (hyper-parameters, presets), ``ensemble`` (probabilistic dynamics ensemble),
``sac`` (SAC, stacked twin critics), ``buffer`` (ring buffers), ``rollout`` (branched model
rollouts), ``policy`` (NumPy PolicySnapshot), ``trainer`` (the MBPO loop), ``tasks`` (termination /
reward functions, task registry), ``reach`` (the Reach task: observation, reward, success),
``safety`` (command clipping, rate limits, watchdog, e-stop), ``schedule`` (when to retrain and how
many SAC updates are owed), ``state_dict`` (optimiser state as flat tensors + a JSON skeleton),
``allocator`` (glibc heap retention for tensor churn), ``gemm`` (narrow matrix products in the form
MKL serves fast). MBPO in a child process beside the control loop is ``mbpo_ros.learner``.

This package imports nothing on purpose: ``mbpo_ros.core.policy`` and ``mbpo_ros.core.config``
must stay importable in a control process without pulling in torch.
"""
