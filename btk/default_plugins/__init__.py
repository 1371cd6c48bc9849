"""btk's default plugin set: the report's pipeline (folder reader, blur and resolution
degraders, the seed CNN) plus a synthetic reader and the terminal and JSON reporters.

Each module registers through the same hooks a third-party plugin uses.
"""
