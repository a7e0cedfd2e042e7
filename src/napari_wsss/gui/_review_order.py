"""The Review widget's "next most useful" control: order the unreviewed tiles by what the model is least sure of
(``tagging.next_tile``: uncertainty, disagreement with the tile's tags, diversity), computed in a worker, then
visit them in that order.

Offered for a tile stack and a slide's grid regions; the full-resolution region editor of a whole slide (regions
computed on the fly) keeps its own order. Models: the project's versions (newest first), the one chosen in the
Segment widget, then every shipped one, each only where it could write into the project (of its classes, or any
while they are not yet fixed by the user's work: another schema's class maps say nothing about tiles tagged or
corrected in these). The one offered first is the one Segment uses or would preselect for the image.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QPushButton

from ._job_controls import JobControlsMixin
from ._worker import Job, run_job


class ReviewOrder(JobControlsMixin, QGroupBox):
    """Model choice, "Order by model", "Next most useful ▶"; ``order`` holds unit keys, most useful first."""

    def __init__(self, review: Any) -> None:
        super().__init__("Next most useful (order by the model)")
        self.review = review
        self.job: Job | None = None
        self.last_error: BaseException | None = None
        self.order: list[str] = []
        self._picked: str | None = None  # the version the user chose in the list (kept while it is offered)
        self.pos = -1  # position in ``order`` of the tile last visited
        self.model_combo = QComboBox()
        self.order_btn = QPushButton("Order by model")
        self.order_btn.setToolTip("rank the unreviewed tiles by the model's uncertainty and disagreement with their "
                                  "tags, look-alikes spread out (runs in the background)")
        self.next_btn = QPushButton("Next most useful ▶")
        self._init_job_controls()
        form = QFormLayout(self)
        form.addRow("model", self.model_combo)
        row = QHBoxLayout()
        for b in (self.order_btn, self.next_btn, self.cancel_btn):
            row.addWidget(b)
        form.addRow(row)
        form.addRow(self.progress)
        form.addRow(self.status)
        self.order_btn.clicked.connect(self.order_by_model)
        self.model_combo.activated.connect(lambda *_: setattr(self, "_picked", self.model_combo.currentData()))
        self.next_btn.clicked.connect(self.next_useful)
        self.cancel_btn.clicked.connect(self.cancel)
        self.next_btn.setEnabled(False)

    # -- models ----------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Offer the models that could write into the open project (project versions newest first), the one Segment
        uses or would preselect chosen unless the user chose another."""
        from ._model_choice import fitting_versions

        s = self.review.session
        current = self.model_combo.currentData()
        self.model_combo.clear()
        if s is None:
            return
        chosen = [(w.version_combo.currentText(), Path(w.version_combo.currentData()))
                  for w in self._segment_widgets() if w.version_combo.currentData()]
        cards = []
        for label, d, card in fitting_versions(s.project, chosen):
            self.model_combo.addItem(label, str(d))
            cards.append((label, card))
        i = self.model_combo.findData(current)
        if i < 0 or (current != self._picked and cards[i][1].class_schema.names != s.project.schema.names):
            i = self._preferred_index(cards)  # the project took other classes since: follow, unless the user chose
        if i >= 0:
            self.model_combo.setCurrentIndex(i)

    def _preferred_index(self, cards: list[tuple[str, Any]]) -> int:
        """Index of the version Segment uses for the image (its choice), else the one it would preselect."""
        from ._model_choice import latest_used_version, preferred_version

        chosen = self.segment_choice()
        if chosen is not None and self.model_combo.findData(str(chosen)) >= 0:
            return self.model_combo.findData(str(chosen))
        layer = self.review.session.image_layer
        found = latest_used_version(layer, cards) or preferred_version(layer, cards)
        return found[0] if found else 0

    def segment_choice(self) -> Path | None:
        """The version chosen in a Segment widget of this viewer for the review's image (None: none docked)."""
        s = self.review.session
        for w in self._segment_widgets():
            if s is not None and w.image_combo.currentText() == s.image_layer.name and w.version_combo.currentData():
                return Path(w.version_combo.currentData())
        return None

    def preferred_model(self) -> Any:
        """The card of the model Segment uses for the review's image, or would preselect (a shipped one)."""
        from ..models.card import load_card
        from ._model_choice import shipped_preferred_card

        s = self.review.session
        if s is None:
            return None
        chosen = self.segment_choice()
        if chosen is None:
            return shipped_preferred_card(s.image_layer)
        try:
            return load_card(chosen)
        except (ValueError, FileNotFoundError):
            return None

    def _segment_widgets(self) -> list[Any]:
        """This viewer's Segment widgets: the version chosen there (which made the predictions) is offered too."""
        from qtpy.QtWidgets import QApplication

        from ._layers import same
        from .segment_widget import SegmentWidget

        return [w for w in QApplication.allWidgets() if isinstance(w, SegmentWidget)
                and same(w.viewer, self.review.viewer)]

    # -- ordering --------------------------------------------------------------------------------------------
    def order_by_model(self) -> None:
        """Rank the session's unreviewed tiles with the chosen model in a worker; then visit the first."""
        from ..tagging.next_tile import rank_tiles_job
        from ..tagging.tiles import tile_of_item
        from ._slide_regions import editor_for

        s = self.review.session
        if s is None or (self.job is not None and self.job.running):
            return
        self.refresh()  # a version trained or fine-tuned since is offered
        try:
            if editor_for(s) is not None and editor_for(s).regions:
                raise ValueError("Ordering by model works on a tile stack or a slide's grid regions, not on the "
                                 "full-resolution region editor; segment the slide at a coarser level to order it.")
            model = self.model_combo.currentData()
            if not model:
                raise ValueError(f"No model of the project's classes ({', '.join(s.project.schema.names)}) to order "
                                 "by: train one (Train widget) or segment with one first.")
            todo = [u.key for u in s.units if u.key in s.project and s.project.item(u.key).status == "unreviewed"]
            if not todo:
                raise ValueError("Every tile is reviewed already (accepted or corrected); nothing to order.")
            tiles = [tile_of_item(s.project.item(k)) for k in todo]
        except (ValueError, KeyError) as e:
            self._show_error(e)
            return
        self.last_error = None
        self._set_running(True)
        self.job = run_job(rank_tiles_job, model, tiles, s.project.source, s.project.tags(),
                           on_progress=self._on_progress, on_error=self._show_error,
                           on_result=partial(self._ranked, todo, Path(model).name),
                           on_cancelled=lambda: self.status.setText("Ordering cancelled; the order is unchanged."),
                           on_finished=lambda: self._set_running(False))

    def _ranked(self, todo: list[str], model: str, order: list[int]) -> None:
        self.order, self.pos = [todo[j] for j in order], -1
        self.status.setText(f"{len(self.order)} unreviewed tiles ordered by {model} (most useful first).")
        self.next_btn.setEnabled(bool(self.order))
        self.next_useful()

    def next_useful(self) -> str | None:
        """Show the next tile of the order that is still unreviewed; returns its key (None: none left)."""
        s = self.review.session
        if s is None:
            return None
        index = {u.key: i for i, u in enumerate(s.units)}
        s.flush()  # strokes on the tile being left are saved first, as Next does
        while self.pos + 1 < len(self.order):
            self.pos += 1
            key = self.order[self.pos]
            if key in index and key in s.project and s.project.item(key).status == "unreviewed":
                self.review.show_unit(index[key])
                self.status.setText(f"most useful {self.pos + 1} / {len(self.order)}: {key}")
                return key
        self.status.setText("Every ordered tile is reviewed; order again for the rest.")
        self.next_btn.setEnabled(False)
        return None

    def _run_buttons(self) -> list[Any]:
        return [self.order_btn]
