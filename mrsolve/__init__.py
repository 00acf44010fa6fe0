"""mrsolve: spectral-volume PROPELLER MRI reconstruction on a shared solvers library."""

__version__ = "0.1.0"
