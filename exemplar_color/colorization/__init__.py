"""Colorization heads: turn the similarity sub-net's outputs into the target's ab.

- ``analogy``: no trained network; warped reference ab refined by edge-aware, confidence-weighted
  propagation guided by the target's L.
- ``network``: the trained colorization sub-net (U-Net-like, 13 input channels for five levels);
  ``checkpoint`` saves and loads it.
- ``heads``: the one ``Head`` protocol both follow, and the network as a head.
- ``exact``: matches certain enough to keep their colour exactly.
- ``guided``: edge-aware upsampling of ab from the working size to the full-resolution L.
"""
