"""Widgets that let a learner see the index: the docid cluster tree, the constrained beam search, and
the soft tree's routing. Each is an ipywidgets box that also displays a static figure of its current
state where no kernel runs (nbconvert HTML, GitHub), see `_static.StaticWidget`.

>>> ClusterTreeExplorer(tree, collection)            # tree = dsilab.docids.make_docids(...)
>>> BeamViewer(model, collection, beam_size=5)         # model = dsilab.models.build_model(...)
>>> SoftTraversalExplorer(index, queries, labels=texts)   # index = dsilab.ann.SoftTree(...).fit(database, ids, queries, targets)
"""
from ._static import StaticWidget, figure_png
from .beam_viewer import BeamViewer
from .cluster_tree import ClusterTreeExplorer, project_2d
from .soft_traversal import SoftTraversalExplorer, tree_layout

__all__ = ["StaticWidget", "figure_png", "ClusterTreeExplorer", "BeamViewer", "SoftTraversalExplorer",
           "project_2d", "tree_layout"]
