"""diprocd: the DIstributed PROcess Control Daemon."""
__version__ = '0.1.0'
