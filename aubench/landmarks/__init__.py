"""68-point landmarks where datasets ship none: detector backends (dlib, face-alignment), the
on-disk cache that ``aubench landmarks`` fills, and face crop/alignment that moves landmarks
along with the pixels. Knows datasets only through the protocols of :mod:`aubench.landmarks.cache`
(the ``dataset`` backend and the by-name lookup live in :mod:`aubench.data`)."""
