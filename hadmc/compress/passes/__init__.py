"""The built-in compression passes, one module each (``hadmc.compress.registry``).

``default_passes()`` imports every module in this folder, so adding an operator is adding a
module here (and its test). Nothing is imported here: a pass module loads its torch code only
when it is applied.
"""
