"""``python -m rain.executor``: the Python executor, started by a governor."""
from .main import main

if __name__ == "__main__":
    main()
