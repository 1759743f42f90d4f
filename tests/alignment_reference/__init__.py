"""Reference for tests/test_alignment_torch.py: the alignment as it was before it moved to torch.

``scale.py``, ``seam.py`` and ``adaptive.py`` are :mod:`alignment.scale`, :mod:`alignment.seam`
and :mod:`alignment.adaptive` as they were when they worked on numpy arrays on the CPU (scipy's
distance transform, labelling and sparse solvers). Kept only so that the torch version can be
checked against them on fixed cases; their module texts follow unchanged.
"""
