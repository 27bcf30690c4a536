"""Order of the gallery examples: from first steps to details."""

ORDER = (
    "plot_quickstart.py",
    "plot_shots_curve.py",
    "plot_alpha_beta_heatmap.py",
    "plot_pipeline_grid_search.py",
    "plot_save_load.py",
)


class ExampleOrder:
    """Sort key for sphinx-gallery's ``within_subsection_order``.

    Examples listed in ``ORDER`` come first, in that order; any other file
    follows, by name.
    """

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        if filename in ORDER:
            return (0, ORDER.index(filename), filename)
        return (1, 0, filename)

    def __repr__(self):
        return f"<{type(self).__name__}>"
