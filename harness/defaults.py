"""Defaults the command line shows before anything heavy is imported (``dgbench --help``
answers without loading torch); the modules that use them import them from here."""

DEFAULT_CELL_TIMEOUT = 3600.0  # seconds a cell may run on the local backend
DEFAULT_CHECKPOINT_SECONDS = 60.0  # how often a training cell saves its state
DTYPE_NAMES = ("float64", "float32")  # gradcheck's --dtype
