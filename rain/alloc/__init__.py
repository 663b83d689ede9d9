"""Running governors on the hosts of a batch allocation or a host list: which hosts with how
many CPUs (``nodes``), how a command reaches them (``launch``), and batch jobs that add
governors while tasks wait (``autoscale``)."""
