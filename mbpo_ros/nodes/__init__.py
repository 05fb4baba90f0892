"""mbpo_ros.nodes"""
