"""Internal helpers shared by every part of the package (not public API).

One home per concept:

* :mod:`.files`: atomic writes and the clean-up of their stale temporary files;
* :mod:`.jsonio`: the one JSON policy (strict JSON, NaN and infinities written as ``null``);
* :mod:`.checks`: validators for integers, floats and class-label tensors;
* :mod:`.seeding`: the one way to derive independent seeds and generators from a run seed;
* :mod:`.text`: number formatting for tables.
"""
