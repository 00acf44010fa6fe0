"""The shared numerical core: linear operators, proximal maps, datafits and algorithms.

Imports nothing else of mrsolve.
"""
