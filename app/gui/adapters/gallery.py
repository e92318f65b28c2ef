"""The gallery as a Qt item model: one row per image, thumbnails loaded lazily off the UI
thread (the view asks for a row's picture; a background job scales the PNG; the row repaints)."""

from __future__ import annotations

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, QSize, Qt
from PySide6.QtGui import QImage, QPixmap

from app.gui.adapters.image_runner import thumbnail
from app.gui.adapters.runner import BackgroundRunner
from app.store.gallery import GalleryImage

AnyIndex = QModelIndex | QPersistentModelIndex
THUMB = 160
IMAGE_ROLE = Qt.ItemDataRole.UserRole + 1  # the row's GalleryImage


class GalleryModel(QAbstractListModel):
    def __init__(self, runner: BackgroundRunner, parent: object = None) -> None:
        super().__init__()
        self.runner = runner
        self.images: list[GalleryImage] = []
        self._thumbs: dict[str, QPixmap] = {}
        self._asked: set[str] = set()
        self.thumbnails_loaded = 0  # for tests and the benchmark: how many arrived

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.images)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid() or not 0 <= index.row() < len(self.images):
            return None
        image = self.images[index.row()]
        if role == IMAGE_ROLE:
            return image
        if role == Qt.ItemDataRole.DecorationRole:
            cached = self._thumbs.get(image.id)
            if cached is None:
                self._ask(image)
            return cached
        if role == Qt.ItemDataRole.ToolTipRole:
            p = image.params
            return f"{p.prompt}\n{p.width}×{p.height} · seed {p.seed} · {p.steps} steps · {p.model}"
        if role == Qt.ItemDataRole.SizeHintRole:
            return QSize(THUMB + 12, THUMB + 12)
        return None

    def set_images(self, images: tuple[GalleryImage, ...] | list[GalleryImage]) -> None:
        self.beginResetModel()
        self.images = list(images)
        keep = {i.id for i in self.images}
        self._thumbs = {k: v for k, v in self._thumbs.items() if k in keep}
        self._asked &= keep
        self.endResetModel()

    def add_image(self, image: GalleryImage) -> None:
        """A new image goes first (the gallery is newest first)."""
        self.beginInsertRows(QModelIndex(), 0, 0)
        self.images.insert(0, image)
        self.endInsertRows()

    def remove_image(self, image_id: str) -> None:
        for row, image in enumerate(self.images):
            if image.id == image_id:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self.images[row]
                self.endRemoveRows()
                self._thumbs.pop(image_id, None)
                return

    def _ask(self, image: GalleryImage) -> None:
        if image.id in self._asked:
            return
        self._asked.add(image.id)
        path, image_id = image.path, image.id
        job = self.runner.submit(lambda: (image_id, thumbnail(path, THUMB)))
        job.done.connect(self._arrived)  # a bound slot: dropped if the model goes first

    def _arrived(self, result: tuple[str, object]) -> None:
        image_id, scaled = result
        if not isinstance(scaled, QImage) or scaled.isNull():
            return
        self._thumbs[image_id] = QPixmap.fromImage(scaled)  # QPixmap: on the UI thread only
        self.thumbnails_loaded += 1
        for row, image in enumerate(self.images):
            if image.id == image_id:
                index = self.index(row)
                self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])
                return
