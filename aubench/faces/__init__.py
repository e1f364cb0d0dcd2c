"""The domain: pure functions of landmarks and labels (codebooks, landmark scheme, AU regions,
heatmaps, the synthetic face renderer). Imports nothing else from aubench."""
