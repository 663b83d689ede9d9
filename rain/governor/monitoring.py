"""Periodic resource samples of the governor's machine (CPU, memory, network)."""
import psutil


class Monitor:
    def __init__(self):
        psutil.cpu_percent(percpu=True)   # the first call only sets the baseline

    def sample(self):
        net = psutil.net_io_counters()
        return {
            "cpu_usage": psutil.cpu_percent(percpu=True),
            "mem_usage": psutil.virtual_memory().percent,
            "net_stat": {"sent": net.bytes_sent, "recv": net.bytes_recv} if net else {},
        }
