"""Ready files: created (content ``ready\\n``) once a process is fully up."""
import os


def write_ready_file(path):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write("ready\n")
    os.replace(tmp, path)
