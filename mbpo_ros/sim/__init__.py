"""mbpo_ros.sim"""
