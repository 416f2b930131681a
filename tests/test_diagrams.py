import matplotlib

matplotlib.use("Agg")

from mlops_course import diagrams


def test_lifecycle_has_every_stage():
    fig = diagrams.lifecycle_diagram()
    texts = [t.get_text() for t in fig.axes[0].texts]
    for name, _ in diagrams.LIFECYCLE:
        assert name in texts
    assert len(fig.axes[0].patches) == len(diagrams.LIFECYCLE)


def test_flow_diagram_draws_boxes_and_arrows():
    fig = diagrams.flow_diagram(["a", "b", "c"], title="t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts if t.get_text()] == ["a", "b", "c"]
    assert len([c for c in ax.get_children() if type(c).__name__ == "Annotation"]) >= 2
