"""mbpo_ros.core"""
