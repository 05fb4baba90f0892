"""mbpo_ros.io"""
