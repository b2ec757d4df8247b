"""polydiff molecules plugin: 3D (EDM / EQGAT-diff style) and 2D (GDSS / DiGress style) molecule diffusion on QM9.

Heavy dependencies (rdkit, e3nn, torch_geometric, fcd_torch, eden) are imported inside functions, so importing
this package stays cheap. Modules: ``data`` (Vocabulary, Molecule, QM9 and user files), ``chemistry`` (RDKit
conversion, bond inference, versioned EDM tables), ``metrics`` (stability, validity, FCD, NSPDK, TV/W1),
``writers`` (SDF, SMILES, PNG grids and 3D views), ``recipes`` (3D: ``molecules/edm``, ``molecules/eqgat``),
``recipes2d`` (2D graphs: ``molecules/digress``, ``molecules/gdss``) and ``graph2d`` (their graph transformer,
dense / ragged layouts, GDSS decoding and valency correction).
"""
