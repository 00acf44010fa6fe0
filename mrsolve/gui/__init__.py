"""napari plugin (npe2 manifest ``napari.yaml``): reader, writer, sample data, widgets.

Qt and napari are imported only by the widget modules and :mod:`mrsolve.gui.launch`
(inside functions), so importing this package needs neither.
"""
