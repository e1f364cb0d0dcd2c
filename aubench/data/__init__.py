"""Datasets yielding the Sample contract (DESIGN.md) and batch assembly with AU heatmaps.

Bad input, the same policy for every loader and for training, evaluation and landmark detection
(details: :mod:`aubench.data.base`): a layout, header or value that breaks the format, a path that
leaves the dataset folder, an image listed twice in a user's CSV and an empty split are errors of
one line at open naming the file (``file:line``), the field and the value; malformed rows of a
shipped label file and missing image files are skipped and counted by reason; a corrupt image is
found when it is read and raises :class:`~aubench.data.table.ImageReadError`, one line naming the
file and the fix (replace it, or delete it so that its row is skipped and counted). Nothing is
ever written into a dataset folder. ``content_fingerprint`` (on every dataset) identifies a split's
content cheaply, e.g. to key a trained model.
"""
