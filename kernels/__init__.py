"""Triton kernels, installed as ``minimamba.kernels`` (one folder per op).

Import ``minimamba`` first (it does so for you when you import ``minimamba.kernels``): with no GPU it
switches Triton to its CPU interpreter before ``triton`` is imported.
"""
