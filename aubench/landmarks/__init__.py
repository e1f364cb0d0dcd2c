"""68-point landmarks where datasets ship none: backends (dlib, face-alignment, dataset), the
on-disk cache that ``aubench landmarks`` fills, and face crop/alignment that moves landmarks
along with the pixels."""
